"""`python -m prefect_intercom.sandbox`: serve the sandbox until interrupted (`--help` lists the flags)."""

from prefect_intercom.sandbox.server import main

raise SystemExit(main())
