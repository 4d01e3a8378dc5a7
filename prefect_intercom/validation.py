"""Validate request bodies and headers against the schemas generated from the docs.

Validators are compiled once per schema. A valid body is confirmed by the same schema compiled
with jsonschema-rs (`prefect_intercom.fast_verdict`); anything it does not accept goes through
`jsonschema`, which decides and reports every violation, each with its JSON Pointer path, a
plain-English message and, where there is an obvious fix, a hint (worded by
`prefect_intercom.violations`, which also masks the phone numbers it quotes).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

from jsonschema import Draft202012Validator

from prefect_intercom.catalog import Endpoint, default_catalog, get_endpoint
from prefect_intercom.errors import IntercomValidationError, ValidationIssue
from prefect_intercom.fast_verdict import compile_fast
from prefect_intercom.numbering_plans import impossible_number
from prefect_intercom.schema_rules import E164, E164_FORMAT, FORMAT_ANNOTATION
from prefect_intercom.violations import explain, is_plain_json, json_pointer, not_json_issues


def validate_request(endpoint: str | Endpoint, body: Any) -> None:
    """Check a request body against the endpoint's generated JSON Schema.

    Args:
        endpoint: Catalogue name of a packaged endpoint, e.g. `"phone_call_redirects"`, or an
            `Endpoint` from any catalogue (e.g. one loaded with `load_catalog(folder)`).
        body: The request body, as it would be sent as JSON.

    Raises:
        IntercomValidationError: The body breaks the schema or is not JSON; `.errors` lists
            every violation with its JSON Pointer `path`, `message` and `hint`.

    Example:
        ```python
        from prefect_intercom import IntercomValidationError, validate_request

        validate_request("phone_call_redirects", {"phone": "+14155550100"})  # fine
        try:
            validate_request("phone_call_redirects", {"phone": "+1 415 555 0100"})
        except IntercomValidationError as error:
            print(error.errors[0].path, error.errors[0].hint)  # /phone remove spaces: +1415•••0100
        ```
    """
    issues = request_issues(endpoint, body)
    if issues:
        raise IntercomValidationError(_endpoint_name(endpoint), issues)


def request_issues(endpoint: str | Endpoint, body: Any) -> list[ValidationIssue]:
    """Every violation in `body`, sorted by path; empty when the body is valid.

    After the schema, every top-level E.164 field that passed it is checked against the numbering
    plans (`prefect_intercom.numbering_plans`; `PREFECT_INTERCOM_NUMBERING_PLANS=0` turns it off).
    """
    compiled = _validator(endpoint, "request_schema")
    issues = _issues(compiled, body)
    if isinstance(body, dict) and compiled.e164_fields:
        refused = {issue.path for issue in issues} if issues else ()
        for name, pointer in compiled.e164_fields:
            value = body.get(name)
            if isinstance(value, str) and pointer not in refused and E164.match(value):
                impossible = impossible_number(value)
                if impossible is not None:
                    issues.append(ValidationIssue(pointer, impossible.message, impossible.hint))
        if len(issues) > 1:
            issues.sort(key=lambda issue: (issue.path, issue.message))
    return issues


def _e164_fields(schema: Any) -> tuple[tuple[str, str], ...]:
    """Names and JSON Pointers of the top-level properties the schema marks as E.164 phone numbers."""
    properties = schema.get("properties", {}) if isinstance(schema, dict) else {}
    return tuple(
        (name, json_pointer([name]))
        for name, rule in properties.items()
        if isinstance(rule, dict) and rule.get(FORMAT_ANNOTATION) == E164_FORMAT
    )


def validate_headers(endpoint: str | Endpoint, headers: Mapping[str, Any]) -> None:
    """Check request headers against the endpoint's generated header schema.

    Raises:
        IntercomValidationError: A header value is not allowed (e.g. an unknown
            `Intercom-Version`, or a value with a line break).
    """
    issues = _issues(_validator(endpoint, "headers_schema"), dict(headers))
    if issues:
        raise IntercomValidationError(_endpoint_name(endpoint), issues, what="request headers")


@dataclass(frozen=True)
class _Validator:
    """One schema compiled: `jsonschema` to decide and explain, the fast engine to confirm a valid value."""

    validator: Draft202012Validator
    fast: Callable[[Any], bool] | None
    e164_fields: tuple[tuple[str, str], ...]

    def confirms(self, instance: Any) -> bool:
        """Whether the fast engine accepts `instance` (`False`: ask `jsonschema`)."""
        if self.fast is None or not is_plain_json(instance):
            return False
        try:
            return self.fast(instance)
        except Exception:  # a value it cannot read: `jsonschema` decides
            return False


def _validator(endpoint: str | Endpoint, schema: str) -> _Validator:
    """The compiled validators of `endpoint`'s `request_schema` or `headers_schema`, compiled once per schema."""
    if isinstance(endpoint, Endpoint) and not _is_packaged(endpoint):
        try:
            text = json.dumps(getattr(endpoint, schema), sort_keys=True, allow_nan=False)
        except (TypeError, ValueError):  # not a JSON document: compiled for this call only
            return _compile(getattr(endpoint, schema))
        return _compiled_text(text)
    return _packaged_validator(_endpoint_name(endpoint), schema)


@cache
def _packaged_validator(endpoint: str, schema: str) -> _Validator:
    return _compile(getattr(get_endpoint(endpoint), schema))


@lru_cache(maxsize=32)
def _compiled_text(schema: str) -> _Validator:
    """Another catalogue's schema, keyed by its text: a schema changed in place is compiled again."""
    return _compile(json.loads(schema))


def _compile(schema: dict[str, Any]) -> _Validator:
    Draft202012Validator.check_schema(schema)
    return _Validator(Draft202012Validator(schema), compile_fast(schema), _e164_fields(schema))


def _endpoint_name(endpoint: str | Endpoint) -> str:
    return endpoint.name if isinstance(endpoint, Endpoint) else endpoint


def _is_packaged(endpoint: Endpoint) -> bool:
    """Whether `endpoint` is the packaged catalogue's own entry (its validators are cached)."""
    return any(packaged is endpoint for packaged in default_catalog())


def _issues(compiled: _Validator, instance: Any) -> list[ValidationIssue]:
    if compiled.confirms(instance):
        return []  # valid: no need to explain anything
    # The schema is checked only for a value JSON can carry.
    issues = list(not_json_issues(instance)) or [
        issue for violation in compiled.validator.iter_errors(instance) for issue in explain(violation)
    ]
    unique = {(issue.path, issue.message): issue for issue in issues}
    return sorted(unique.values(), key=lambda issue: (issue.path, issue.message))
