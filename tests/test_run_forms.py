"""The Run forms: plain fields, no "str | None" toggles, the fields users set first first (issue 15, item 6)."""

from __future__ import annotations

import pytest
import yaml
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools import validate
from prefect.utilities.schema_tools.validation import ValidationError

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


FLOWS = {"test-request": the_test_request_flow, "deflect-calls": deflect_calls}
DEPLOYMENTS = yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text(encoding="utf-8"))["deployments"]
FORM_INPUT = {"deflect-calls": {"csv_path": "callers.csv"}, "test-request": {}}
"""What a user must type in each Run form (its required fields); every other field keeps its default."""


def stored_schema(flow) -> dict:
    """The parameter schema as `prefect deploy` stores it on the server (`cli/deploy/_core.py`, `runner.py`)."""
    return parameter_schema(flow).model_dump(exclude_unset=True)


def test_no_deflect_calls_parameter_is_nullable() -> None:
    """Issue 15: a null default made the Run form send null, which the enforcing server refuses (409)."""
    properties = parameter_schema(deflect_calls).model_dump_for_openapi()["properties"]
    nullable = [
        name
        for name, field in properties.items()
        if "anyOf" in field or field.get("type") in (None, "null") or ("default" in field and field["default"] is None)
    ]
    assert nullable == []
    assert properties["batch_key"]["default"] == "" and properties["batch_key"]["type"] == "string"
    assert properties["concurrency"] == {**properties["concurrency"], "type": "integer", "default": 0}
    assert properties["attribute_columns"] == {**properties["attribute_columns"], "type": "array", "default": []}


def test_a_python_caller_s_none_still_means_not_given() -> None:
    """`deflect_calls(..., batch_key=None)` worked before the defaults became "" and 0: it still does."""
    optional = ("report_path", "batch_key", "attribute_columns", "ledger_storage", "concurrency", "results_path")
    given = deflect_calls.validate_parameters({"csv_path": "callers.csv", **dict.fromkeys(optional, None)})
    defaults = deflect_calls.validate_parameters({"csv_path": "callers.csv"})
    assert given == defaults
    assert [defaults[name] for name in optional] == ["", "", [], "", 0, ""]


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=[deployment["name"] for deployment in DEPLOYMENTS])
def test_every_prefect_yaml_deployment_enforces_its_parameter_schema(deployment) -> None:
    assert deployment.get("enforce_parameter_schema", True) is True


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=[deployment["name"] for deployment in DEPLOYMENTS])
def test_a_run_form_submitted_with_its_defaults_passes_the_server_s_check(deployment) -> None:
    """The form sends every schema default back; the server validates it as `create_flow_run_from_deployment` does.

    That is `prefect.server.api.deployments`: the deployment's parameters updated with the run's,
    then `validate(parameters, deployment.parameter_openapi_schema, raise_on_error=True)`, required
    fields included; `prefect deploy` checks the deployment's own parameters with `ignore_required`.
    """
    flow = FLOWS[deployment["name"]]
    schema = stored_schema(flow)
    own = deployment.get("parameters", {})
    validate(own, schema, raise_on_error=True, ignore_required=True)
    form = {name: field["default"] for name, field in schema["properties"].items() if "default" in field}
    parameters = {**own, **form, **FORM_INPUT[deployment["name"]]}
    validate(parameters, schema, raise_on_error=True)
    flow.validate_parameters(parameters)  # and the flow run takes them (the worker validates them again)


def test_the_server_s_check_is_real_a_null_is_refused() -> None:
    """What the form sent before issue 15's fix, refused by the same check (so the test above proves something)."""
    schema = stored_schema(deflect_calls)
    with pytest.raises(ValidationError, match="None is not of type 'string'"):
        validate({"csv_path": "callers.csv", "batch_key": None}, schema, raise_on_error=True)


def test_an_api_client_s_run_with_only_the_required_fields_passes_the_server_s_check() -> None:
    """The browser test creates a run through the API with `csv_path` and `block_name` only."""
    schema = stored_schema(deflect_calls)
    validate({"block_name": "intercom", "dry_run": False, "csv_path": "callers.csv"}, schema, raise_on_error=True)
