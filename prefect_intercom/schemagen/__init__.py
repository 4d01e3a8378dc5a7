"""Generate JSON Schema (draft 2020-12) and catalogue records from documentation pages (docs/schema.md).

Build-time code only: `import prefect_intercom` never loads it. Run it as a module:
`python -m prefect_intercom.schemagen schemas/ -o schemas [--check]`. `docs_page` reads a page,
`generator` turns it (and Intercom's OpenAPI descriptions beside it) into the schema files.
"""

from prefect_intercom.schemagen.generator import find_drift, generate, generate_from_files, main, render, write_outputs

__all__ = ["find_drift", "generate", "generate_from_files", "main", "render", "write_outputs"]
