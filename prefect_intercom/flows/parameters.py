"""Flow parameters that read well in the Prefect UI's Run form: a title, a line of help, no null.

Why `labelled` and the `Optional*` types look as they do: `docs/flow-modules.md`, "parameters".
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from prefect_intercom.credentials import INTERCOM_VERSIONS

DEFAULT_BLOCK_NAME = "intercom"
BLOCK_VERSION = "the block's"
"""The `intercom_version` choice that keeps the version saved in the credentials block."""

VersionChoice = Literal[(BLOCK_VERSION, *INTERCOM_VERSIONS)]  # type: ignore[valid-type]
"""`BLOCK_VERSION` or one of the versions of the generated header schema."""


def labelled(title: str, description: str) -> Any:
    """A pydantic `Field` whose title and help show in the Prefect UI's Run form (use it in `Annotated`)."""
    return Field(title=title, description=description, json_schema_extra={"title": title, "description": description})


def _none_as(empty: Any) -> BeforeValidator:
    """Read a Python caller's `None` as `empty`, the Run form's "not given"."""
    return BeforeValidator(lambda value: empty if value is None else value)


BlockName = Annotated[
    str,
    labelled("Credentials block", "Name of your saved Intercom Credentials block (Blocks > Intercom Credentials)."),
]
IntercomVersionParameter = Annotated[
    VersionChoice,
    labelled(
        "Intercom-Version",
        'The Intercom API version for this run only; "the block\'s" keeps the version saved in the block.',
    ),
]
DryRun = Annotated[bool, labelled("Dry run", "Validate and show what would be sent, but send nothing.")]
OptionalStr = Annotated[str, _none_as("")]
"""Text whose empty value (`""`, or `None` from Python) means "not given"."""
OptionalInt = Annotated[int, _none_as(0)]
"""A count whose `0` (or `None` from Python) means "not given"."""
OptionalStrList = Annotated[list[str], _none_as([])]
"""A list whose empty value (or `None` from Python) means "not given"."""
OptionalObject = Annotated[dict[str, Any], _none_as({})]
"""A JSON object whose empty value (or `None` from Python) means "not given"."""


def version_override(choice: str | None) -> str | None:
    """The version to send instead of the block's: None for `BLOCK_VERSION` (or None)."""
    return None if choice in (None, "", BLOCK_VERSION) else choice
