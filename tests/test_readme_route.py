"""The README's deployment section parses into the steps the e2e test runs (fast; the run itself is e2e)."""

from __future__ import annotations

import csv

from prefect_intercom.validation import validate_request

from .conftest import PROJECT_ROOT
from .e2e.readme_route import readme_steps

README = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")


def test_the_deployment_section_is_the_install_line_then_deploy_worker_and_both_runs() -> None:
    steps = readme_steps(README)
    commands = [step.command for step in steps]
    assert commands[0] == "pip install '.[sandbox]'"
    assert f"```bash\n{commands[0]} " in README  # the Install section's own line, not another route
    assert not any("pip install -e" in command for command in commands)
    assert "INTERCOM_TEST_PHONE=+14155550100 prefect deploy --all" in commands
    background = [step.command for step in steps if step.background]
    assert background == [
        "prefect server start",
        "prefect worker start --pool local",
        "prefect-intercom sandbox --port 8090",
    ]
    runs = [command for command in commands if command.startswith("prefect deployment run")]
    assert [run.split(" -p ")[0] for run in runs] == [
        "prefect deployment run test-request/test-request",
        "prefect deployment run deflect-calls/deflect-calls",
    ]
    assert all("-p block_name=intercom-sandbox" in run for run in runs)


def test_the_example_callers_are_valid_and_fictional() -> None:
    with (PROJECT_ROOT / "docs" / "examples" / "callers.csv").open(newline="", encoding="utf-8") as handle:
        phones = [row["phone"] for row in csv.DictReader(handle)]
    assert len(phones) == 3  # the README: four texts with the test request's
    for phone in phones:
        validate_request("phone_call_redirects", {"phone": phone})
        assert phone.startswith("+1415555")  # 555 numbers: nobody real is texted
