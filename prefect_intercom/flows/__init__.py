"""The package's Prefect flows and their command lines (`prefect-intercom test-request|deflect-calls|sandbox`).

Nothing is imported here, so `import prefect_intercom.flows.X` loads only what X needs; the
modules, one job each: `docs/flow-modules.md`.
"""
