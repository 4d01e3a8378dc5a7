"""Flow parameters that read well in the Prefect UI's Run form: a title and help for each.

The flows annotate their parameters with these types (`Annotated[..., Field(title=..., description=...)]`),
so the deployment's parameter schema, and hence the Run form, shows a human title and a line of help
instead of the raw parameter name. Prefect titles every parameter with its name and takes
its description from the docstring, so `labelled` also puts both in `json_schema_extra`, which
wins. The Intercom-Version is a plain dropdown (no "str / None" toggle): `BLOCK_VERSION`, which
keeps the block's, then the versions of the generated header schema
(`prefect_intercom.credentials.INTERCOM_VERSIONS`, no hand-written list).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, WithJsonSchema

from prefect_intercom.credentials import INTERCOM_VERSIONS

DEFAULT_BLOCK_NAME = "intercom"
BLOCK_VERSION = "the block's"
"""The `intercom_version` choice that keeps the version saved in the credentials block."""

VersionChoice = Literal[(BLOCK_VERSION, *INTERCOM_VERSIONS)]  # type: ignore[valid-type]
"""`BLOCK_VERSION` or one of the versions of the generated header schema."""


def labelled(title: str, description: str) -> Any:
    """A pydantic `Field` whose title and help show in the Prefect UI's Run form (use it in `Annotated`).

    Args:
        title: The form field's label.
        description: The help shown under it.

    Returns:
        The `Field`.
    """
    return Field(title=title, description=description, json_schema_extra={"title": title, "description": description})


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


def version_override(choice: str | None) -> str | None:
    """The version to send instead of the block's: None for `BLOCK_VERSION` (or None)."""
    return None if choice in (None, "", BLOCK_VERSION) else choice


# Optional parameters as plain fields in the Run form: pydantic writes `anyOf: [X, null]` for
# `X | None`, which the Prefect UI renders as a type toggle ("str | None", "Property is type
# 'None'"). These write the plain type; a field left empty is not sent, so the default (`None`) holds.
OptionalStr = Annotated[str | None, WithJsonSchema({"type": "string"})]
"""`str | None`, shown in the Run form as a plain text field (empty: `None`)."""
OptionalInt = Annotated[int | None, WithJsonSchema({"type": "integer"})]
"""`int | None`, shown in the Run form as a plain number field (empty: `None`)."""
OptionalStrList = Annotated[list[str] | None, WithJsonSchema({"type": "array", "items": {"type": "string"}})]
"""`list[str] | None`, shown in the Run form as a plain list (empty: `None`)."""
OptionalObject = Annotated[dict[str, Any] | None, WithJsonSchema({"type": "object"})]
"""`dict[str, Any] | None`, shown in the Run form as a plain JSON object field (empty: `None`)."""
