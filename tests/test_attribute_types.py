"""Typed custom attributes: the strict parser, the header's declarations, the workspace's types (issue 15, item 7).

The workspace's types are read from the real sandbox over loopback, through the client's one pipeline.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from prefect_intercom import IntercomCredentials
from prefect_intercom.batch.attribute_types import (
    REASON,
    RefusedRow,
    fetch_workspace_types,
    parse_value,
    split_title,
    workspace_types,
)
from prefect_intercom.batch.csv_input import read_requests_csv, scan_csv
from prefect_intercom.errors import IntercomValidationError
from prefect_intercom.sandbox import Sandbox

from .conftest import SECRET_TOKEN

DECEMBER_3 = 1796256000  # 2026-12-03T00:00:00Z


@pytest.mark.parametrize(
    ("text", "type_", "value"),
    [
        ("true", "boolean", True),
        ("TRUE", "boolean", True),
        ("False", "boolean", False),
        ("1001", "integer", 1001),
        ("-7", "integer", -7),
        ("+7", "integer", 7),
        ("0", "integer", 0),
        ("9223372036854775807", "integer", 2**63 - 1),
        ("3.5", "float", 3.5),
        ("1e3", "float", 1000.0),
        ("-.25", "float", -0.25),
        ("7", "float", 7.0),
        ("02134", "float", 2134.0),
        ("2026-12-03", "date", DECEMBER_3),
        ("2026-12-03T00:00:00Z", "date", DECEMBER_3),
        ("2026-12-03 01:30+01:30", "date", DECEMBER_3),
        ("2026-12-03T00:00:01.900+00:00", "date", DECEMBER_3 + 1),
        ("02134", "string", "02134"),
        ("1e3", "string", "1e3"),
    ],
)
def test_a_value_converts_as_its_type_says(text: str, type_: str, value: Any) -> None:
    converted = parse_value(text, type_)
    assert converted == value and type(converted) is type(value)


@pytest.mark.parametrize(
    ("text", "type_", "reason"),
    [
        ("yes", "boolean", "write true or false"),
        ("1", "boolean", "write true or false"),
        ("t", "boolean", "write true or false"),
        ("02134", "integer", "an integer would lose its leading zero; declare the column zip:string to keep it"),
        ("1e3", "integer", "write whole digits only"),
        ("1.0", "integer", "write whole digits only"),
        ("1,000", "integer", "write whole digits only"),
        ("9223372036854775808", "integer", "outside the 64-bit range"),
        ("nan", "float", "write a decimal number"),
        ("inf", "float", "write a decimal number"),
        ("1,5", "float", "write a decimal number"),
        ("1e999", "float", "too large"),
        ("03/12/2026", "date", "write an ISO 8601 date"),
        ("20261203", "date", "write an ISO 8601 date"),
        ("2026-02-30", "date", "no such day"),
        ("2026-12-03T14:30", "date", "a time needs its zone"),
    ],
)
def test_a_value_not_of_its_type_is_refused_with_what_to_write(text: str, type_: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason.replace("(", r"\(")):
        parse_value(text, type_, "zip")


def test_a_title_declares_a_type_after_its_last_colon() -> None:
    assert split_title("vip:boolean") == ("vip", "boolean")
    assert split_title("Signup : DATE") == ("Signup", "date")
    assert split_title("note") == ("note", None)
    assert split_title("ratio 1:2") == ("ratio 1:2", None)  # not a word after the colon: a plain title


def _csv(tmp_path: Path, text: str) -> str:
    path = tmp_path / "callers.csv"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_declared_columns_convert_and_others_stay_text(tmp_path: Path) -> None:
    path = _csv(
        tmp_path,
        "phone,vip:boolean,account_id:integer,score:float,signup:date,note:string,zip\n"
        "+14155550100,TRUE, 1001 ,1e3,2026-12-03,02134,02134\n"
        "+14155550101,,,,  ,,\n",
    )
    first, second = read_requests_csv(path)
    assert first == {
        "phone": "+14155550100",
        "custom_attributes": {
            "vip": True,
            "account_id": 1001,
            "score": 1000.0,
            "signup": DECEMBER_3,
            "note": "02134",
            "zip": "02134",  # undeclared and unknown to the workspace: text, as always
        },
    }
    assert second == {"phone": "+14155550101"}  # empty (and blank typed) cells leave the attribute out


def test_a_cell_not_of_its_type_refuses_its_row_naming_the_column(tmp_path: Path) -> None:
    path = _csv(tmp_path, "phone,account_id:integer,vip:boolean\n+14155550100,02134,true\n+14155550101,7,yes\n")
    first, second = read_requests_csv(path)
    assert isinstance(first, RefusedRow) and first.code == REASON == "attribute_type"
    assert first.message.startswith("column 'account_id': '02134' is not an integer (declared in the header)")
    assert "custom_attributes" not in first
    assert isinstance(second, RefusedRow) and "column 'vip': 'yes' is not a boolean" in second.message


def test_a_refused_row_can_never_be_sent_by_another_path(credentials: IntercomCredentials) -> None:
    with credentials.get_client() as client, pytest.raises(IntercomValidationError):
        client.prepare("phone_call_redirects", RefusedRow("+14155550100", "column 'vip': ..."))


def test_the_workspace_types_convert_undeclared_columns(tmp_path: Path) -> None:
    path = _csv(tmp_path, "phone,vip,zip,plan\n+14155550100,false,02134,7\n+14155550101,no,1,2\n")
    first, second = read_requests_csv(path, workspace_types={"vip": "boolean", "plan": "string"})
    assert first["custom_attributes"] == {"vip": False, "zip": "02134", "plan": "7"}
    assert isinstance(second, RefusedRow) and "(the workspace's type)" in second.message


@pytest.mark.parametrize(
    ("header", "workspace", "sentence"),
    [
        ("phone,vip:bool", None, r"column 'vip:bool' declares the type 'bool', which is not one of string, integer"),
        ("phone,vip:integer", {"vip": "boolean"}, r"declares 'vip' an integer, but the Intercom workspace defines"),
        ("phone,zip:integer", {"zip": "string"}, r"defines the custom attribute 'zip' as a string; declare zip:string"),
        ("phone,vip,vip:boolean", None, r"columns 'vip' and 'vip:boolean' both name the custom attribute 'vip'"),
    ],
)
def test_a_declared_type_that_is_unknown_or_contradicts_the_workspace_is_one_sentence(
    tmp_path: Path, header: str, workspace: dict[str, str] | None, sentence: str
) -> None:
    path = _csv(tmp_path, f"{header}\n+14155550100,1,1\n")
    with pytest.raises(ValueError, match=sentence) as refused:
        scan_csv(path, phone_column="phone", workspace_types=workspace)
    assert "line 1 (the header)" in str(refused.value) and "\n" not in str(refused.value)


def test_attribute_columns_are_named_without_their_type(tmp_path: Path) -> None:
    path = _csv(tmp_path, "phone,vip:boolean,note\n+14155550100,true,x\n")
    [body] = read_requests_csv(path, attribute_columns=["vip"])
    assert body == {"phone": "+14155550100", "custom_attributes": {"vip": True}}


def test_only_the_contacts_live_custom_attributes_of_known_types_count() -> None:
    def entry(name: str, data_type: str, **more: Any) -> dict[str, Any]:
        return {"type": "data_attribute", "name": name, "data_type": data_type, "custom": True, **more}

    answer = {
        "type": "list",
        "data": [
            entry("vip", "boolean", model="contact"),
            entry("signed", "datetime"),
            entry("name", "string", custom=False),
            entry("old", "integer", archived=True),
            entry("plan", "string", model="company"),
            entry("tags", "list"),
            "junk",
        ],
    }
    assert workspace_types(answer) == {"vip": "boolean", "signed": "date"}
    assert workspace_types({"type": "list"}) == {}


def test_the_workspace_types_are_read_once_through_the_pipeline(caplog: pytest.LogCaptureFixture) -> None:
    with Sandbox(token=SECRET_TOKEN, data_attributes={"vip": "boolean", "account_id": "integer"}) as sandbox:
        credentials = IntercomCredentials(access_token=SECRET_TOKEN, base_url=sandbox.url)
        with credentials.get_client() as client:
            prepared = client.prepare_get("/data_attributes", {"model": "contact"})
            assert prepared.url == f"{sandbox.url}/data_attributes?model=contact" and prepared.content == b""
            assert "Content-Type" not in prepared.headers and "Authorization" not in prepared.headers
            types = fetch_workspace_types(client, logging.getLogger("test"))
        [read] = sandbox.reads
    assert types == {"vip": "boolean", "account_id": "integer"}
    assert sandbox.received == []  # a read texts nobody and is kept apart
    assert read.method == "GET" and read.path == "/data_attributes?model=contact"
    assert read.headers["authorization"] == f"Bearer {SECRET_TOKEN}"
    assert read.headers["intercom-version"] == credentials.intercom_version


@pytest.mark.parametrize("base", ["forbidden", "unreachable"])
def test_a_failed_read_is_one_warning_and_no_types(base: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    with Sandbox(token=SECRET_TOKEN, data_attributes={"vip": "boolean"}, data_attributes_status=403) as sandbox:
        url = sandbox.url
        if base == "forbidden":
            credentials = IntercomCredentials(access_token=SECRET_TOKEN, base_url=url)
            with credentials.get_client() as client:
                assert fetch_workspace_types(client, logging.getLogger("test")) is None
    if base == "unreachable":  # the sandbox has stopped: nothing listens on its port
        with IntercomCredentials(access_token=SECRET_TOKEN, base_url=url).get_client() as client:
            assert fetch_workspace_types(client, logging.getLogger("test")) is None
    [warning] = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert warning.startswith("Could not read the workspace's custom attribute types with GET /data_attributes: ")
    assert warning.endswith(
        "only the types the CSV header declares (name:type) are applied, other columns are sent as text"
    )
    assert ("403" in warning and "the read_users_companies scope?" in warning) == (base == "forbidden")
    assert SECRET_TOKEN[:8] not in warning and "\n" not in warning


@pytest.mark.parametrize("path", ["data_attributes", "/data_attributes?model=x", "//evil.example/x", "/a/../b"])
def test_a_get_takes_a_plain_path_only(credentials: IntercomCredentials, path: str) -> None:
    with credentials.get_client() as client, pytest.raises(ValueError, match="not a plain API path"):
        client.prepare_get(path)
