"""What Intercom documents `POST /phone_call_redirects` answers, before any rate limit or fault.

`401` with an `error.list` without the right bearer token, `400 intercom_version_invalid` for an
unknown `Intercom-Version`, `400 invalid_phone_number` for a phone that is not E.164, the two
numbers below for the documented failures, `422` for custom attributes Intercom would not take,
and the documented `200` answer otherwise.
"""

from __future__ import annotations

import uuid
from typing import Any

from jsonschema import Draft202012Validator

from prefect_intercom.catalog import PHONE_CALL_REDIRECTS, get_endpoint
from prefect_intercom.schema_rules import E164

SMS_FAILS_PHONE = "+15005550001"
UNPROCESSABLE_PHONE = "+15005550002"
ENDPOINT = get_endpoint(PHONE_CALL_REDIRECTS)

_VERSIONS = frozenset(ENDPOINT.header_enum("Intercom-Version"))
# What Intercom's OpenAPI description (2.12, `custom_attributes`) accepts as custom attributes,
# plus booleans and non-integer numbers: its own example carries them and Intercom's data
# attributes support them. Anything else is answered 422, as Intercom documents.
_CUSTOM_ATTRIBUTES = Draft202012Validator(
    {
        "type": "object",
        "additionalProperties": {
            "anyOf": [
                {"type": ["string", "number", "boolean"]},
                {
                    "type": "object",
                    "properties": {
                        "type": {"type": "string"},
                        "instances": {
                            "type": "array",
                            "items": {
                                "type": ["object", "null"],
                                "properties": {
                                    "id": {"type": "string"},
                                    "external_id": {"type": "string"},
                                    "external_created_at": {"type": ["integer", "null"]},
                                    "external_updated_at": {"type": ["integer", "null"]},
                                    "created_at": {"type": "integer"},
                                    "updated_at": {"type": "integer"},
                                    "type": {"type": "string"},
                                    "custom_attributes": {"type": "object", "additionalProperties": {"type": "string"}},
                                },
                            },
                        },
                    },
                },
            ]
        },
    }
)


def documented_answer(
    *, token: str, response_shape: str, authorization: str | None, version: str | None, body: Any
) -> tuple[int, dict[str, Any]]:
    """The documented answer to one request: `(status, JSON payload)`.

    Args:
        token: The bearer token the sandbox accepts.
        response_shape: `"phone"` or `"url"`, the shape of the 200 answer.
        authorization: The request's Authorization header.
        version: The request's Intercom-Version header.
        body: The request's JSON body (`None` when it was not JSON).

    Returns:
        The status and the JSON payload.
    """
    if authorization != f"Bearer {token}":
        return 401, {
            "type": "error.list",
            "errors": [{"code": "unauthorized", "message": "Access Token Invalid"}],
        }
    if version is not None and version not in _VERSIONS:
        return 400, {
            "type": "error.list",
            "errors": [{"code": "intercom_version_invalid", "message": f"Requested version {version} is invalid"}],
        }
    if not isinstance(body, dict):
        return 400, {"type": "error.list", "errors": [{"code": "parameter_invalid", "message": "Invalid JSON body"}]}
    phone = body.get("phone")
    if not isinstance(phone, str) or not E164.match(phone):
        return 400, {"error_key": "invalid_phone_number", "message": "Invalid phone number"}
    if phone == SMS_FAILS_PHONE:
        return 400, {"error_key": "sms_failed", "message": "SMS was not sent due to an unknown error"}
    attributes_refused = "custom_attributes" in body and not _CUSTOM_ATTRIBUTES.is_valid(body["custom_attributes"])
    if phone == UNPROCESSABLE_PHONE or attributes_refused:
        return 422, {"error_key": "unprocessable_entity", "message": "Custom attributes could not be processed"}
    if response_shape == "url":
        return 200, {"type": "phone_call_redirect", "url": f"http://via.intercom.io/msgr/{uuid.uuid4()}"}
    return 200, {"type": "phone_call_redirect", "phone": phone}


def rate_limited(limit: int | None, window: float) -> tuple[int, dict[str, Any]]:
    """Intercom's `429 rate_limit_exceeded` answer for `limit` requests per `window` seconds."""
    message = f"Exceeded rate limit of {limit} in {window:g}_seconds"
    return 429, {"type": "error.list", "errors": [{"code": "rate_limit_exceeded", "message": message}]}


def data_attributes_answer(
    *, token: str, authorization: str | None, version: str | None, attributes: dict[str, str], status: int
) -> tuple[int, dict[str, Any]]:
    """The answer to `GET /data_attributes?model=contact`: the workspace's attributes, or an error.

    Args:
        token: The bearer token the sandbox accepts.
        authorization: The request's Authorization header.
        version: The request's Intercom-Version header.
        attributes: The custom attributes, name to data type.
        status: The status to answer with (anything but 200 is an `error.list`).

    Returns:
        The status and the JSON payload: `{type: list, data: [data_attribute, ...]}` with two
        standard attributes (`custom: false`) and the custom ones.
    """
    if authorization != f"Bearer {token}":
        return 401, {"type": "error.list", "errors": [{"code": "unauthorized", "message": "Access Token Invalid"}]}
    if version is not None and version not in _VERSIONS:
        return 400, {
            "type": "error.list",
            "errors": [{"code": "intercom_version_invalid", "message": f"Requested version {version} is invalid"}],
        }
    if status != 200:
        return status, {"type": "error.list", "errors": [{"code": "unauthorized", "message": "Not authorized"}]}
    standard = [("name", "string", False), ("email", "string", False)]
    custom = [(name, data_type, True) for name, data_type in attributes.items()]
    data = [
        {
            "type": "data_attribute",
            "model": "contact",
            "name": name,
            "full_name": f"custom_attributes.{name}" if is_custom else name,
            "label": name,
            "description": "",
            "data_type": data_type,
            "api_writable": True,
            "custom": is_custom,
            "archived": False,
        }
        for name, data_type, is_custom in standard + custom
    ]
    return 200, {"type": "list", "data": data}
