"""The `IntercomCredentials` block: fields, hosts, the base URL guard, secrecy, registration."""

from __future__ import annotations

import json
import subprocess
import sys
from urllib.parse import urlparse

import httpx
import pydantic
import pytest
from prefect.blocks.core import Block
from prefect.testing.standard_test_suites import BlockStandardTestSuite

from prefect_intercom import IntercomConfigurationError, IntercomCredentials
from prefect_intercom.credentials import INTERCOM_VERSIONS
from prefect_intercom.hosts import REGION_HOSTS

from .conftest import OPENAPI_DIR, SECRET_TOKEN


def test_defaults() -> None:
    credentials = IntercomCredentials(access_token=SECRET_TOKEN)
    assert credentials.intercom_version == "2.12"
    assert credentials.region == "us"
    assert credentials.api_url == "https://api.intercom.io"
    assert credentials.timeout == 30.0
    assert credentials.allow_custom_base_url is False


@pytest.mark.parametrize(
    ("region", "host"),
    [("us", "https://api.intercom.io"), ("eu", "https://api.eu.intercom.io"), ("au", "https://api.au.intercom.io")],
)
def test_region_hosts(region: str, host: str) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json={"type": "phone_call_redirect", "phone": "+14155550100"})

    credentials = IntercomCredentials(access_token=SECRET_TOKEN, region=region)
    assert credentials.api_url == host
    with credentials.get_client(transport=httpx.MockTransport(handler)) as client:
        client.request("phone_call_redirects", {"phone": "+14155550100"})
    assert seen == [f"{host}/phone_call_redirects"]


def test_region_hosts_are_intercoms_documented_servers() -> None:
    import yaml

    spec = yaml.safe_load((OPENAPI_DIR / "phone_call_redirects.2.12.openapi.yaml").read_text())
    assert sorted(server["url"] for server in spec["servers"]) == sorted(REGION_HOSTS.values())


def test_versions_come_from_the_generated_header_schema() -> None:
    from prefect_intercom.catalog import get_endpoint

    documented = get_endpoint("phone_call_redirects").header_enum("Intercom-Version")
    assert list(INTERCOM_VERSIONS) == documented
    assert INTERCOM_VERSIONS[:2] == ("1.0", "1.1")
    assert INTERCOM_VERSIONS[-4:] == ("2.15", "2.16", "Unstable", "Preview")
    field = IntercomCredentials.model_json_schema()["properties"]["intercom_version"]
    assert field["enum"] == list(INTERCOM_VERSIONS)  # a dropdown in the UI
    assert field["default"] == "2.12"
    with pytest.raises(pydantic.ValidationError):
        IntercomCredentials(access_token=SECRET_TOKEN, intercom_version="3.0")


@pytest.mark.parametrize("version", ["2.13", "2.14", "2.16", "Preview", "Unstable", "2.12", "1.0"])
def test_versions_released_after_the_docs_page_are_accepted_and_sent(version: str) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Intercom-Version"])
        return httpx.Response(200, json={"type": "phone_call_redirect", "phone": "+14155550100"})

    credentials = IntercomCredentials(access_token=SECRET_TOKEN, intercom_version=version)
    with credentials.get_client(transport=httpx.MockTransport(handler)) as client:
        client.request("phone_call_redirects", {"phone": "+14155550100"})
    assert seen == [version]


def test_every_version_of_intercoms_openapi_description_is_in_the_dropdown() -> None:
    import yaml

    for name in ("phone_call_redirects.2.12.openapi.yaml", "phone_call_redirects.preview.openapi.yaml"):
        spec = yaml.safe_load((OPENAPI_DIR / name).read_text())
        assert set(spec["components"]["schemas"]["intercom_version"]["enum"]) <= set(INTERCOM_VERSIONS), name


def test_every_field_is_described() -> None:
    schema = IntercomCredentials.model_json_schema()
    for name, field in schema["properties"].items():
        assert field.get("description"), name
        assert field.get("title"), name
    assert IntercomCredentials.get_description()
    assert IntercomCredentials._documentation_url
    assert "IntercomCredentials.load" in IntercomCredentials.get_code_example()


@pytest.mark.parametrize(
    "base_url",
    [
        "http://127.0.0.1:8765",
        "http://localhost:1234/",
        "https://127.0.0.5",
        "http://[::1]:9000",
        "https://api.intercom.io",
        "https://api.eu.intercom.io/",
        "https://API.AU.INTERCOM.IO",
    ],
)
def test_allowed_base_urls(base_url: str) -> None:
    credentials = IntercomCredentials(access_token=SECRET_TOKEN, base_url=base_url)
    assert credentials.api_url == base_url.rstrip("/")


@pytest.mark.parametrize(
    ("base_url", "fragment"),
    [
        ("https://intercom-proxy.example.com", "allow_custom_base_url"),
        ("https://api.intercom.io.evil.com", "allow_custom_base_url"),
        ("http://api.intercom.io", "plain http"),
        ("http://proxy.example.com", "plain http"),
        ("https://api.intercom.io@evil.com", "credentials"),
        ("https://user:pw@api.intercom.io", "credentials"),
        ("ftp://api.intercom.io", "http(s) URL"),
        ("api.intercom.io", "http(s) URL"),
        ("https://api.intercom.io/?x=1", "query"),
    ],
)
def test_refused_base_urls(base_url: str, fragment: str) -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        IntercomCredentials(access_token=SECRET_TOKEN, base_url=base_url)
    assert fragment in str(caught.value)
    assert SECRET_TOKEN not in str(caught.value)


def test_custom_host_needs_the_explicit_opt_in_and_https() -> None:
    credentials = IntercomCredentials(
        access_token=SECRET_TOKEN, base_url="https://intercom-proxy.example.com/v1", allow_custom_base_url=True
    )
    assert credentials.api_url == "https://intercom-proxy.example.com/v1"
    with pytest.raises(pydantic.ValidationError, match="plain http"):
        IntercomCredentials(access_token=SECRET_TOKEN, base_url="http://proxy.example.com", allow_custom_base_url=True)


@pytest.mark.parametrize("token", ["", "   ", "\n"])
def test_blank_tokens_are_refused(token: str) -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        IntercomCredentials(access_token=token)
    assert "access_token is empty" in str(caught.value)


def test_surrounding_white_space_is_dropped() -> None:
    credentials = IntercomCredentials(access_token=f"  {SECRET_TOKEN}\n")
    assert credentials.access_token.get_secret_value() == SECRET_TOKEN


@pytest.mark.parametrize("token", ["tok\nX-Injected: 1", "tok en", "tök"])
def test_tokens_that_cannot_be_a_header_are_refused_without_quoting_them(token: str) -> None:
    credentials = IntercomCredentials(access_token=token)
    with pytest.raises(IntercomConfigurationError) as caught:
        credentials.get_client()
    assert token not in str(caught.value)


def test_the_token_never_shows() -> None:
    credentials = IntercomCredentials(access_token=SECRET_TOKEN, base_url="http://127.0.0.1:1")
    shown = [
        repr(credentials),
        str(credentials),
        credentials.model_dump_json(),
        json.dumps(credentials.model_dump(mode="json")),
        repr(credentials.get_client()),
    ]
    for text in shown:
        assert SECRET_TOKEN not in text
    with pytest.raises(pydantic.ValidationError) as caught:
        IntercomCredentials(access_token=SECRET_TOKEN, base_url="https://evil.example.com")
    assert SECRET_TOKEN not in str(caught.value) + repr(caught.value.errors())


def test_save_and_load_round_trip(prefect_server: None) -> None:
    IntercomCredentials(access_token=SECRET_TOKEN, region="eu", intercom_version="2.11").save(
        "round-trip", overwrite=True
    )
    loaded = IntercomCredentials.load("round-trip")
    assert loaded.access_token.get_secret_value() == SECRET_TOKEN
    assert (loaded.region, loaded.intercom_version, loaded.api_url) == ("eu", "2.11", "https://api.eu.intercom.io")


def test_prefect_block_register_finds_the_block(prefect_server: None) -> None:
    import os
    import shutil

    from prefect.settings import PREFECT_API_URL

    prefect_cli = shutil.which("prefect", path=os.path.dirname(sys.executable))
    assert prefect_cli, "the prefect command is not installed next to this Python"
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    result = subprocess.run(
        [prefect_cli, "block", "register", "-m", "prefect_intercom"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Intercom Credentials" in result.stdout
    listing = subprocess.run(
        [prefect_cli, "block", "type", "ls"], capture_output=True, text=True, env=env, timeout=120, check=True
    )
    assert "intercom-credentials" in listing.stdout


def test_collection_entry_point() -> None:
    from importlib.metadata import entry_points

    [entry] = [ep for ep in entry_points(group="prefect.collections") if ep.name == "prefect_intercom"]
    assert entry.value == "prefect_intercom"


class TestBlockStandards(BlockStandardTestSuite):
    """Prefect's own standards for blocks: description, documentation URL, field help, code example, logo."""

    @pytest.fixture
    def block(self) -> type[Block]:
        return IntercomCredentials

    def test_has_a_valid_image(self, block: type[Block]) -> None:
        # Prefect's version downloads the image (with Pillow); these tests run offline, so the
        # address is checked instead: an https URL of Intercom's brand mark, not the "Fin" avatar.
        url = urlparse(str(block._logo_url))
        assert url.scheme == "https" and url.netloc and url.path
        assert "intercom" in url.path.lower() and "fin" not in url.path.lower().split("/")
