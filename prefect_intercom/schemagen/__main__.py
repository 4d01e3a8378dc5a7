"""`python -m prefect_intercom.schemagen`: regenerate (or `--check`) the schemas from the docs pages."""

from prefect_intercom.schemagen.generator import main

raise SystemExit(main())
