"""Test request: the repository's entry point for `prefect.yaml` and the README's command.

The flow and its command line ship in the package (`prefect_intercom.flows.test_request`,
`prefect_intercom.flows.test_request_cli`); installed, the same command is
`prefect-intercom test-request ...`:

    python flows/test_request.py --sandbox --phone +14155550100        # local sandbox, no account
    python flows/test_request.py --block intercom --phone +14155550100  # your saved block
    python flows/test_request.py serve --block intercom --phone +1...   # one-click "Quick run" in the UI
"""

from prefect_intercom.flows.test_request import test_request
from prefect_intercom.flows.test_request_cli import build_parser, main, parse_custom_attribute

__all__ = ["build_parser", "main", "parse_custom_attribute", "test_request"]

if __name__ == "__main__":
    raise SystemExit(main(prog="python flows/test_request.py"))
