"""The endpoint catalogue: found by name or words, clear errors, and a second endpoint is only a docs page."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from prefect_intercom.catalog import (
    PHONE_CALL_REDIRECTS,
    Catalog,
    Endpoint,
    default_catalog,
    find,
    get_endpoint,
    load_catalog,
)
from prefect_intercom.client import IntercomClient
from prefect_intercom.errors import EndpointNotFoundError, IntercomValidationError
from prefect_intercom.schemagen import generate_from_files, write_outputs
from prefect_intercom.schemagen.generator import descriptions_for
from prefect_intercom.validation import request_issues, validate_headers, validate_request

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PHONE_PAGE = PROJECT_ROOT / "schemas" / "phone_call_redirects.txt"
SECOND_PAGE = PROJECT_ROOT / "tests" / "data" / "second_endpoint" / "tags.txt"
TwoEndpoints = tuple[Catalog, Path]


# --- the packaged catalogue -------------------------------------------------------------------


def test_packaged_catalogue_has_the_phone_call_redirect_endpoint() -> None:
    catalog = default_catalog()
    assert catalog.names == [PHONE_CALL_REDIRECTS]
    endpoint = catalog.get(PHONE_CALL_REDIRECTS)
    assert (endpoint.method, endpoint.path) == ("POST", "/phone_call_redirects")
    assert endpoint.title == "POST /phone_call_redirects"
    assert endpoint.summary == "You can use the API to deflect phone calls to the Intercom Messenger."
    assert "send an SMS" in endpoint.description
    assert endpoint.request_schema["required"] == ["phone"]
    assert "2.12" in endpoint.header_enum("Intercom-Version")
    assert endpoint.header_default("Intercom-Version") == "2.12"
    assert endpoint.steps[0]["text"] == "Add HTTP Task to your workflow definition."


@pytest.mark.parametrize(
    "query",
    [
        "phone",
        "Phone",
        "redirect",
        "redirects",
        "deflect calls to messenger",
        "Deflect phone calls to the Intercom Messenger",
        "POST /phone_call_redirects",
        "post /phone_call_redirects",
        "/phone_call_redirects",
        "phone_call_redirects",
        "phone call redirect",
        "sms",
        "redir",  # prefix, as typed into a search box
        "custom attributes",
        "Messenger, deflect CALLS!",  # any order, case and punctuation
    ],
)
def test_queries_people_type_find_the_phone_call_redirect_endpoint(query: str) -> None:
    assert find(query).name == PHONE_CALL_REDIRECTS
    assert find(query).path == "/phone_call_redirects"


@pytest.mark.parametrize(
    ("query", "meant"),
    [
        ("mesenger", "'messenger' for 'mesenger'"),
        ("deflection", "'deflect' for 'deflection'"),
        ("text a caller", "'call' for 'caller'"),
    ],
)
def test_a_typo_is_answered_with_the_word_meant(query: str, meant: str) -> None:
    with pytest.raises(EndpointNotFoundError, match=re.escape(f"No endpoint matches {query!r}. Did you mean {meant}?")):
        find(query)


@pytest.mark.parametrize(
    "query",
    [
        "POST /phone_call_redirects",
        "post  /phone_call_redirects",
        "phone_call_redirects",
        "/PHONE_call_redirects",
    ],
)
def test_an_exact_name_path_or_title_wins_over_words(query: str) -> None:
    phone = get_endpoint(PHONE_CALL_REDIRECTS)
    newer = replace(phone, name="phone_call_redirects_v2", path="/phone_call_redirects/v2")
    catalog = Catalog([phone, newer])
    assert catalog.find(query) is phone  # the words alone match both
    assert catalog.find("phone_call_redirects_v2") is newer


def test_words_must_all_be_found() -> None:
    assert find("deflect calls to messenger").name == PHONE_CALL_REDIRECTS
    with pytest.raises(EndpointNotFoundError, match="No endpoint matches 'deflect calls to slack'"):
        find("deflect calls to slack")


def test_a_query_that_matches_nothing_lists_what_exists() -> None:
    with pytest.raises(EndpointNotFoundError) as caught:
        find("create a ticket")
    message = str(caught.value)
    assert "'create a ticket'" in message
    assert "Available endpoints: phone_call_redirects (POST /phone_call_redirects: You can" in message
    assert isinstance(caught.value, LookupError)


def test_an_empty_query_is_refused_with_the_listing() -> None:
    with pytest.raises(EndpointNotFoundError, match=r"query is empty.*phone_call_redirects"):
        find("   ")


def test_a_method_and_path_query_never_finds_another_method() -> None:
    """Asking for `GET /phone_call_redirects` must not quietly find the POST that texts people."""
    with pytest.raises(EndpointNotFoundError, match="No endpoint matches 'GET /phone_call_redirects'"):
        find("GET /phone_call_redirects")


def test_get_by_unknown_name_lists_what_exists() -> None:
    with pytest.raises(EndpointNotFoundError, match=r"No endpoint named 'contacts'.*phone_call_redirects"):
        get_endpoint("contacts")


def test_reference_markdown_has_description_headers_with_versions_and_body_fields() -> None:
    markdown = get_endpoint(PHONE_CALL_REDIRECTS).reference_markdown()
    assert markdown.startswith("## `POST /phone_call_redirects`")
    assert "deflect phone calls to the Intercom Messenger" in markdown
    assert "### Request headers" in markdown and "### Request body fields" in markdown
    # Allowed versions in version order (the docs page lists them shuffled), then the default.
    assert "`1.0`, `1.1`, `1.2`, `1.3`, `1.4`, `2.0`," in markdown
    assert (
        "`2.9`, `2.10`, `2.11`, `2.12`, `2.13`, `2.14`, `2.15`, `2.16`, `Preview`, `Unstable`. Default: `2.12`."
        in markdown
    )
    assert "| `phone` | String | Yes | Phone number in E.164 format" in markdown
    assert "| `custom_attributes` | Object | No |" in markdown


def test_catalogue_refuses_two_entries_with_one_name() -> None:
    endpoint = get_endpoint(PHONE_CALL_REDIRECTS)
    with pytest.raises(ValueError, match="two catalogue entries are named 'phone_call_redirects'"):
        Catalog([endpoint, endpoint])


def test_an_empty_catalogue_says_so() -> None:
    with pytest.raises(EndpointNotFoundError, match="The catalogue is empty"):
        Catalog([]).find("phone")


# --- a second endpoint is only a docs page and a regeneration ---------------------------------


@pytest.fixture
def two_endpoint_catalog(tmp_path: Path) -> TwoEndpoints:
    """Run the generator on the real page and a second page, into a fresh folder, and load it."""
    pages = tmp_path / "pages"
    pages.mkdir()
    shutil.copy(PHONE_PAGE, pages)
    for description in descriptions_for(PHONE_PAGE):  # the page's second source: Intercom's OpenAPI descriptions
        shutil.copy(description, pages)
    shutil.copy(SECOND_PAGE, pages)
    output = tmp_path / "generated"
    written = write_outputs(generate_from_files([pages]), output)
    assert sorted(path.name for path in written) == [
        "phone_call_redirects.endpoint.json",
        "phone_call_redirects.headers.schema.json",
        "phone_call_redirects.request.schema.json",
        "tags.endpoint.json",
        "tags.headers.schema.json",
        "tags.request.schema.json",
    ]
    return load_catalog(output), output


def test_second_endpoint_is_loaded_next_to_the_first(two_endpoint_catalog: TwoEndpoints) -> None:
    catalog, _ = two_endpoint_catalog
    assert catalog.names == ["phone_call_redirects", "tags"]
    tags = catalog.get("tags")
    assert (tags.method, tags.path) == ("POST", "/tags")
    assert tags.summary == "You can use this endpoint to create a new tag or update an existing one."
    assert tags.header_enum("Intercom-Version") == ["2.11", "2.12"]
    assert "| `name` | String | Yes | The name of the tag" in tags.reference_markdown()
    # The phone endpoint regenerated from the same page is the packaged one, field for field.
    assert catalog.get(PHONE_CALL_REDIRECTS) == get_endpoint(PHONE_CALL_REDIRECTS)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("tag", "tags"),
        ("create a tag", "tags"),
        ("POST /tags", "tags"),
        ("label conversations", "tags"),
        ("phone", "phone_call_redirects"),
        ("redirect", "phone_call_redirects"),
        ("deflect calls to messenger", "phone_call_redirects"),
        ("POST /phone_call_redirects", "phone_call_redirects"),
    ],
)
def test_both_endpoints_are_searchable(two_endpoint_catalog: TwoEndpoints, query: str, expected: str) -> None:
    catalog, _ = two_endpoint_catalog
    assert catalog.find(query).name == expected
    assert catalog.find(query.upper()).name == expected


def test_no_match_lists_both_endpoints(two_endpoint_catalog: TwoEndpoints) -> None:
    catalog, _ = two_endpoint_catalog
    with pytest.raises(EndpointNotFoundError) as caught:
        catalog.find("invoices")
    assert "phone_call_redirects (POST /phone_call_redirects:" in str(caught.value)
    assert "tags (POST /tags: You can use this endpoint to create a new tag" in str(caught.value)


def test_a_query_matching_both_is_refused_naming_them(two_endpoint_catalog: TwoEndpoints) -> None:
    catalog, _ = two_endpoint_catalog
    with pytest.raises(EndpointNotFoundError, match="'post' matches 2 endpoints") as caught:
        catalog.find("post")
    assert "phone_call_redirects (POST /phone_call_redirects), tags (POST /tags)" in str(caught.value)
    assert "Be more specific" in str(caught.value)


def test_validation_works_for_the_second_endpoint(two_endpoint_catalog: TwoEndpoints) -> None:
    tags = two_endpoint_catalog[0].get("tags")
    validate_request(tags, {"name": "VIP"})
    validate_request(tags, {"name": "VIP", "id": "17"})
    with pytest.raises(IntercomValidationError) as caught:
        validate_request(tags, {"nmae": "VIP"})
    error = caught.value
    assert error.endpoint == "tags"
    assert [(issue.path, issue.message, issue.hint) for issue in error.errors] == [
        ("/name", "required field 'name' is missing", None),
        ("/nmae", "unknown field 'nmae'", "did you mean 'name'?"),
    ]
    assert [issue.path for issue in request_issues(tags, {"name": 7})] == ["/name"]
    not_allowed = re.escape("'2.9' is not one of the allowed values: 2.11, 2.12")
    with pytest.raises(IntercomValidationError, match=not_allowed):
        validate_headers(tags, {"Content-Type": "application/json", "Intercom-Version": "2.9"})


def test_validation_by_name_still_uses_the_packaged_catalogue(two_endpoint_catalog: TwoEndpoints) -> None:
    validate_request("phone_call_redirects", {"phone": "+14155550100"})
    with pytest.raises(EndpointNotFoundError, match="No endpoint named 'tags'"):
        validate_request("tags", {"name": "VIP"})
    # The regenerated phone endpoint (a different object) validates the same way.
    regenerated = two_endpoint_catalog[0].get(PHONE_CALL_REDIRECTS)
    assert request_issues(regenerated, {"phone": "+1 415 555 0100"}) == request_issues(
        PHONE_CALL_REDIRECTS, {"phone": "+1 415 555 0100"}
    )


def test_the_request_pipeline_prepares_the_second_endpoint(two_endpoint_catalog: TwoEndpoints) -> None:
    tags = two_endpoint_catalog[0].get("tags")
    client = IntercomClient("not-a-real-token", base_url="http://127.0.0.1:9", intercom_version="2.11")
    prepared = client.prepare(tags, {"name": "VIP"})  # nothing is sent: preparing never touches the network
    assert (prepared.method, prepared.url) == ("POST", "http://127.0.0.1:9/tags")
    assert prepared.content == b'{"name":"VIP"}'
    assert prepared.display_headers()["Authorization"] == "Bearer [REDACTED]"
    with pytest.raises(IntercomValidationError, match="Invalid request headers for tags"):
        IntercomClient("not-a-real-token", base_url="http://127.0.0.1:9", intercom_version="2.9").prepare(
            tags, {"name": "VIP"}
        )


def test_a_broken_record_is_named(tmp_path: Path, two_endpoint_catalog: TwoEndpoints) -> None:
    _, generated = two_endpoint_catalog
    record = json.loads((generated / "tags.endpoint.json").read_text())
    del record["path"]
    (generated / "tags.endpoint.json").write_text(json.dumps(record))
    with pytest.raises(EndpointNotFoundError, match=re.escape("tags.endpoint.json is incomplete")):
        load_catalog(generated)


def test_load_catalog_accepts_a_string_path(two_endpoint_catalog: TwoEndpoints) -> None:
    _, generated = two_endpoint_catalog
    assert load_catalog(str(generated)).names == ["phone_call_redirects", "tags"]
    assert isinstance(next(iter(load_catalog(str(generated)))), Endpoint)
