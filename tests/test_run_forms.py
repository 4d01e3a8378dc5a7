"""The Run forms: plain fields, no "str | None" toggles, the fields users set first first (issue 15, item 6)."""

from __future__ import annotations

import pytest
import yaml
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools import validate

from prefect_intercom.flows.deflect_calls import deflect_calls
from prefect_intercom.flows.test_request import PhoneCallRedirectBody
from prefect_intercom.flows.test_request import test_request as the_test_request_flow

from .conftest import PROJECT_ROOT


@pytest.mark.parametrize("flow", [deflect_calls, the_test_request_flow], ids=["deflect-calls", "test-request"])
def test_no_optional_parameter_renders_as_a_type_toggle(flow) -> None:
    properties = parameter_schema(flow).model_dump_for_openapi()["properties"]
    toggles = [name for name, field in properties.items() if "anyOf" in field or field.get("type") == "null"]
    assert toggles == []
    assert all("type" in field or "$ref" in field or "allOf" in field for field in properties.values())


@pytest.mark.parametrize("flow", [deflect_calls, the_test_request_flow], ids=["deflect-calls", "test-request"])
def test_no_field_of_a_nested_form_renders_as_a_type_toggle(flow) -> None:
    """The test-request body's custom attributes showed "dict | None" and "Property is type 'None'" in the browser."""
    definitions = parameter_schema(flow).model_dump_for_openapi().get("definitions") or {}
    toggles = [
        f"{model}.{name}"
        for model, definition in definitions.items()
        for name, field in (definition.get("properties") or {}).items()
        if "anyOf" in field or field.get("type") == "null"
    ]
    assert toggles == []


def test_the_body_s_default_passes_the_server_s_parameter_check() -> None:
    """The Run form sends the body's default back; a null custom attributes was refused (409) in the browser."""
    schema = parameter_schema(the_test_request_flow).model_dump_for_openapi()
    default = schema["properties"]["body"]["default"]
    assert default == {"phone": "", "custom_attributes": {}}
    validate({"body": default}, schema, raise_on_error=True, ignore_required=True)


def test_an_empty_custom_attributes_object_from_the_form_is_not_sent() -> None:
    body = PhoneCallRedirectBody.model_validate({"phone": "+14155550100", "custom_attributes": {}})
    assert body.request_body() == {"phone": "+14155550100"}
    given = PhoneCallRedirectBody.model_validate({"phone": "+14155550100", "custom_attributes": {"vip": True}})
    assert given.request_body() == {"phone": "+14155550100", "custom_attributes": {"vip": True}}


def test_the_fields_users_set_first_come_first() -> None:
    properties = parameter_schema(deflect_calls).model_dump_for_openapi()["properties"]
    in_form = sorted(properties, key=lambda name: properties[name]["position"])
    assert in_form[:4] == ["csv_path", "block_name", "dry_run", "report_path"]
    assert in_form[-1] == "results_path"  # the command line's progress file, not for people


def test_an_empty_optional_field_keeps_its_default() -> None:
    properties = parameter_schema(deflect_calls).model_dump_for_openapi()["properties"]
    assert properties["batch_key"]["default"] is None and properties["batch_key"]["type"] == "string"
    assert properties["concurrency"]["type"] == "integer"
    assert properties["attribute_columns"] == {**properties["attribute_columns"], "type": "array"}


def test_a_run_form_submitted_unchanged_passes_the_server_s_check_on_every_prefect_yaml_deployment() -> None:
    """The form sends every schema default back; where the server enforces the schema, each must validate.

    deflect-calls' empty optional fields default to null, which its `type: string` refuses (a 409 seen in
    the browser), so prefect.yaml turns enforcement off there and the flow validates its parameters.
    """
    flows = {"test-request": the_test_request_flow, "deflect-calls": deflect_calls}
    deployments = yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text(encoding="utf-8"))["deployments"]
    for deployment in deployments:
        schema = parameter_schema(flows[deployment["name"]]).model_dump_for_openapi()
        defaults = {name: field["default"] for name, field in schema["properties"].items() if "default" in field}
        sent = {**defaults, **deployment.get("parameters", {})}
        if deployment.get("enforce_parameter_schema", True):
            validate(sent, schema, raise_on_error=True, ignore_required=True)
        else:
            assert any(value is None for value in sent.values()), "enforcement is off for no reason any more"
