"""The sandbox judged by Intercom's description: schemathesis against a real sandbox server.

Schemathesis generates valid and invalid requests for `POST /phone_call_redirects` from the
description and checks every answer with all its checks (status codes, content types, response
schemas, invalid data refused, valid data accepted, a request without the token refused).

It runs against the *corrected* description (`description.CORRECTIONS`): four places where
Intercom's 2.12 text is wrong. `test_where_the_official_description_is_wrong` below shows each
one against the sandbox, so a correction cannot hide a sandbox bug.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from jsonschema import Draft202012Validator
from schemathesis import GenerationMode

from prefect_intercom.sandbox import Sandbox

from ..bounded import examples
from ..conftest import SECRET_TOKEN
from .description import CORRECTIONS, corrected, json_schema, official

schema = schemathesis.openapi.from_dict(corrected())
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
    max_examples=examples(60),
    deterministic=True,
)
AUTHORIZATION = {"Authorization": f"Bearer {SECRET_TOKEN}"}


@pytest.fixture(scope="module", params=["phone", "url"], ids=["answers-type-phone", "answers-type-url"])
def conformance_sandbox(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    """A sandbox per 200 answer shape, shared by all generated cases."""
    with Sandbox(token=SECRET_TOKEN, response_shape=request.param) as running:
        yield running


@schema.parametrize()
def test_the_sandbox_conforms_to_the_description(case: schemathesis.Case, conformance_sandbox: Sandbox) -> None:
    case.call_and_validate(base_url=conformance_sandbox.url, headers=AUTHORIZATION)


def test_schemathesis_covers_the_operation() -> None:
    operations = [result.ok() for result in schema.get_all_operations()]
    assert [(operation.method.upper(), operation.path) for operation in operations] == [
        ("POST", "/phone_call_redirects")
    ]


# Each case: a request the official 2.12 description calls valid (or invalid), and how the
# sandbox, modelled on Intercom's documented answers, must treat it. One per correction.
OFFICIAL_IS_WRONG = [
    pytest.param(None, "no body", 400, id="body-optional"),
    pytest.param(b"null", "a null body", 400, id="body-nullable"),
    pytest.param(b'{"phone": "+1 1234567890"}', "the description's own phone example", 400, id="phone-not-e164"),
    pytest.param(
        b'{"phone": "+14155550100", "custom_attributes": {"paid_subscriber": true, "monthly_spend": 155.5}}',
        "the description's own custom_attributes example values",
        200,
        id="attributes-boolean-float",
    ),
]


@pytest.mark.parametrize(("content", "what", "status"), OFFICIAL_IS_WRONG)
def test_where_the_official_description_is_wrong(content: bytes | None, what: str, status: int) -> None:
    assert len(OFFICIAL_IS_WRONG) == len(CORRECTIONS)
    body_schema = json_schema(official(), "create_phone_switch_request")
    fixed_schema = json_schema(corrected(), "create_phone_switch_request")
    with Sandbox(token=SECRET_TOKEN) as sandbox:
        answer = httpx.post(
            f"{sandbox.url}/phone_call_redirects",
            content=content,
            headers={**AUTHORIZATION, "Content-Type": "application/json"},
        )
    assert answer.status_code == status, (what, answer.text)
    if content is None:
        # The official description lets the body be left out; the corrected one requires it.
        assert "required" not in official()["paths"]["/phone_call_redirects"]["post"]["requestBody"]
        return
    body = json.loads(content)
    official_says_valid = Draft202012Validator(body_schema).is_valid(body)
    corrected_says_valid = Draft202012Validator(fixed_schema).is_valid(body)
    # The official description's verdict contradicts the answer; the corrected one agrees.
    assert official_says_valid is (status != 200), what
    assert corrected_says_valid is (status == 200), what
