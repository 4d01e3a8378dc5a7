"""Markdown reports of a test request, one per documented integration step (plain functions of plain values).

None is ever given the access token, and phones are shown masked: `docs/flow-modules.md`, "reports".
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from prefect_intercom.catalog import Endpoint
from prefect_intercom.errors import (
    IntercomAPIError,
    IntercomTransportError,
    IntercomValidationError,
    Outcome,
    ValidationIssue,
)
from prefect_intercom.prepared import REDACTED, PreparedRequest
from prefect_intercom.privacy import mask_phone, mask_values
from prefect_intercom.responses import IntercomResponse

STEP_HTTP_TASK = "Add the HTTP task"
STEP_FIND_API = "Find the API and load its reference"
STEP_TEST_REQUEST = "Test request"
STEPS = (STEP_HTTP_TASK, STEP_FIND_API, STEP_TEST_REQUEST)
MAX_JSON_BLOCK = 20_000
RATE_LIMIT_LABELS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


def step_heading(number: int) -> str:
    """`# Step 2 · Find the API and load its reference`."""
    return f"# Step {number} · {STEPS[number - 1]}"


def connection_markdown(
    *,
    block_name: str,
    api_url: str,
    region: str,
    block_version: str,
    version_override: str | None = None,
    base_url_set: bool = False,
    timeout: float | None = None,
) -> str:
    """Step 1: the credentials block that was loaded and where requests will go.

    Args:
        block_name: Name of the `IntercomCredentials` block.
        api_url: The API root requests go to.
        region: The block's region.
        block_version: The block's `Intercom-Version`.
        version_override: A version chosen for this run only, if any.
        base_url_set: Whether the block's base URL overrides the region's host.
        timeout: The block's timeout in seconds.

    Returns:
        Markdown.
    """
    region_text = f"`{region}`" + (" (not used: the block's base URL overrides it)" if base_url_set else "")
    if version_override and version_override != block_version:
        version_text = f"`{version_override}` (this run; the block says `{block_version}`)"
    else:
        version_text = f"`{version_override or block_version}`"
    rows = [
        ("Block", f"`intercom-credentials/{block_name}`"),
        ("Host", f"`{api_url}`"),
        ("Region", region_text),
        ("Intercom-Version", version_text),
        ("Access token", f"`{REDACTED}` (stored encrypted in the block, never shown)"),
    ]
    if timeout is not None:
        rows.append(("Timeout", f"{timeout:g} s"))
    lines = [step_heading(1), "", f"Loaded the Intercom credentials block **{_escape(block_name)}**.", ""]
    lines += _table(("Setting", "Value"), rows)
    return "\n".join(lines)


def reference_markdown(
    *,
    query: str,
    endpoint: Endpoint,
    url: str,
    body: Any,
    prepared: PreparedRequest | None = None,
    error: IntercomValidationError | None = None,
) -> str:
    """Step 2: the search, the endpoint's reference, the prepared request and the validation.

    Args:
        query: What was searched for.
        endpoint: The endpoint the request goes to.
        url: The full URL.
        body: The request body as given (shown even when it is invalid).
        prepared: The prepared request, when the body and headers were valid.
        error: The validation error, when they were not.

    Returns:
        Markdown.
    """
    lines = [step_heading(2), "", f"Searched the catalogue for {_code_span(query)}: found **{endpoint.title}**."]
    lines += ["", endpoint.reference_markdown(), "", "## Prepared request", "", f"`{endpoint.method} {url}`", ""]
    if prepared is not None:
        headers = prepared.display_headers().items()
        lines += _table(("Header", "Value"), [(name, _code_span(value)) for name, value in headers])
    else:
        lines.append("_Headers are prepared once the request is valid._")
    lines += ["", "Body (JSON):", "", _json_block(mask_values(body)), "", "## Validation", ""]
    lines += validation_lines(error)
    return "\n".join(lines)


def validation_lines(error: IntercomValidationError | None) -> list[str]:
    """The validation result: a check mark, or a table of every problem with its hint."""
    if error is None:
        return ["**Valid**: the body and headers match the schemas generated from Intercom's documentation."]
    count = f"{len(error.errors)} problem" + ("s" if len(error.errors) != 1 else "")
    return [f"**Invalid {error.what}** ({count}); nothing was sent.", "", *issues_table(error.errors)]


def issues_table(issues: Sequence[ValidationIssue]) -> list[str]:
    """A markdown table of validation issues: field (JSON Pointer), problem, hint."""
    rows = [(_code_span(_field(issue.path)), _escape(issue.message), _escape(issue.hint or "")) for issue in issues]
    return _table(("Field", "Problem", "Hint"), rows)


def response_markdown(prepared: PreparedRequest, response: IntercomResponse) -> str:
    """Step 3, success: status, latency, request id, rate-limit headers and the JSON body."""
    phone = response.data.get("phone") or prepared.body.get("phone")
    sent_to = f" Intercom texted a Messenger link to {_code_span(mask_phone(phone))}." if phone else ""
    sentence = f"**{_status(response.status_code)}** from {_request(prepared)} in {response.elapsed_ms:.0f} ms."
    lines = [step_heading(3), "", sentence + sent_to, ""]
    rows = [
        ("Status", f"`{response.status_code}`"),
        ("Latency", f"{response.elapsed_ms:.0f} ms"),
        ("Request id", _code_span(response.request_id, "not sent")),
    ]
    rows += _rate_limit_rows(response.headers)
    lines += _table(("What", "Value"), rows)
    lines += ["", "Response body (JSON):", "", _json_block(mask_values(response.data))]
    if response.truncated is not None:
        lines += ["", f"The answer was {_escape(response.truncated)}; the SMS was sent all the same."]
    if response.unparsed_body is not None:
        lines += ["", "The body was not a JSON object; it began:", "", "```", response.unparsed_body, "```"]
    return "\n".join(lines)


def api_error_markdown(prepared: PreparedRequest, error: IntercomAPIError) -> str:
    """Step 3, Intercom refused: status, error code, message, request id, hint and the body."""
    lines = [step_heading(3), "", f"**Refused: {_status(error.status_code)}** from {_request(prepared)}.", ""]
    rows = [
        ("Status", f"`{error.status_code}`"),
        ("Error code", _code_span(error.error_code, "none")),
        ("Message", _escape(error.message or "none")),
        ("Request id", _code_span(error.request_id, "not sent")),
        ("Hint", _escape(error.hint or "none")),
        ("Sent?", _outcome_text(error.outcome)),
    ]
    rows += _rate_limit_rows(error.headers)
    lines += _table(("What", "Value"), rows)
    if len(error.errors) > 1:
        lines += ["", "All errors:", ""]
        lines += [f"- {_code_span(item.get('code', ''))}: {_escape(item.get('message', ''))}" for item in error.errors]
    if error.body is not None:
        lines += ["", "Response body (JSON):", "", _json_block(error.body)]
    return "\n".join(lines)


def transport_error_markdown(prepared: PreparedRequest, error: IntercomTransportError) -> str:
    """Step 3, no answer: what happened and whether the person may have been texted."""
    lines = [step_heading(3), "", f"**No answer** from {_request(prepared)}.", ""]
    lines += _table(("What", "Value"), [("Error", _escape(str(error))), ("Sent?", _outcome_text(error.outcome))])
    return "\n".join(lines)


def dry_run_markdown(prepared: PreparedRequest) -> str:
    """Step 3 skipped on purpose: what would have been sent."""
    sentence = f"Run again with `dry_run` off to send {_request(prepared)} with the body above."
    return "\n".join([step_heading(3), "", f"**Dry run: nothing was sent.** {sentence}"])


def not_sent_markdown(error: IntercomValidationError) -> str:
    """Step 3 never ran: the request was invalid, so nothing was sent."""
    lines = [step_heading(3), "", f"**Not sent**: the {error.what} is invalid. Fix it and run again.", ""]
    lines += issues_table(error.errors)
    return "\n".join(lines)


def not_found_markdown(error: Exception) -> str:
    """Step 2 found no endpoint (or several equally): the error lists what exists."""
    return "\n".join([step_heading(2), "", f"**Not found**: {_escape(str(error))}"])


def _request(prepared: PreparedRequest) -> str:
    """`POST https://...` as a code span."""
    return f"`{prepared.method} {prepared.url}`"


def _field(path: str) -> str:
    """A JSON Pointer as shown: `(body)` for the root, digit runs masked (a key may be a phone number)."""
    return mask_phone(path) if path else "(body)"


def _outcome_text(outcome: Outcome) -> str:
    if outcome is Outcome.NOT_SENT:
        return "No: Intercom did not act on it; it is safe to try again."
    return (
        "Unknown: the request may have reached Intercom, so the person may have been texted. "
        "Check before sending again."
    )


def _rate_limit_rows(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    lowered = {name.lower(): value for name, value in headers.items()}
    values = ((label, lowered.get(label.lower())) for label in RATE_LIMIT_LABELS)
    return [(label, "not sent" if value is None else _code_span(value)) for label, value in values]


def _status(code: int) -> str:
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return str(code)


def _json_block(value: Any) -> str:
    try:
        text = json.dumps(value, indent=2, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > MAX_JSON_BLOCK:  # texts in it were redacted whole before: the cut shows no secret
        text = text[:MAX_JSON_BLOCK] + f"\n... ({len(text) - MAX_JSON_BLOCK:,} more characters not shown)"
    fence_safe = text.replace("```", "`\u200b``")
    return f"```json\n{fence_safe}\n```"


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("\n", " ") for cell in row) + " |" for row in rows]
    return lines


def _escape(text: str) -> str:
    """Text safe inside a markdown table cell."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _code_span(text: str | None, absent: str = "") -> str:
    """Text as a single-backtick code span safe in a table cell (`absent` as is when there is no text).

    An escape for markdown, not a reason code: backticks, pipes and line breaks are replaced.
    """
    if absent and not text:
        return absent
    return "`" + (text or "").replace("`", "'").replace("|", "¦").replace("\r", " ").replace("\n", " ") + "`"
