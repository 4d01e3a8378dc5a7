"""The package's Prefect flows and their command lines (`prefect-intercom test-request|deflect-calls|sandbox`).

- `test_request`: the docs' three integration steps as one flow (one request, artifacts per step);
- `deflect_calls`: every phone of a CSV file texted a Messenger link, at Intercom's rate;
- `parameters`: the flows' parameters with the titles and help the Prefect UI's Run form shows;
- `*_cli`: their command lines; `prefect_intercom.cli` dispatches `prefect-intercom SUBCOMMAND`.

Nothing is imported here, so `import prefect_intercom.flows.X` loads only what X needs.
"""
