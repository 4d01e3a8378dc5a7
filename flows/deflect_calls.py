"""Deflect calls: the repository's entry point for `prefect.yaml` and `python flows/deflect_calls.py`.

The flow and its command line ship in the package (`prefect_intercom.flows.deflect_calls`,
`prefect_intercom.flows.deflect_calls_cli`); installed, the same command is
`prefect-intercom deflect-calls ...`:

    python flows/deflect_calls.py callers.csv --block intercom --report callers.report.csv
    python flows/deflect_calls.py callers.csv --dry-run
    python flows/deflect_calls.py callers.csv --sandbox                 # local sandbox, no account
    python flows/deflect_calls.py callers.csv --block intercom          # again after Ctrl-C: resumes
"""

from prefect_intercom.flows.deflect_calls import deflect_calls
from prefect_intercom.flows.deflect_calls_cli import build_parser, main

__all__ = ["build_parser", "deflect_calls", "main"]

if __name__ == "__main__":
    raise SystemExit(main(prog="python flows/deflect_calls.py"))
