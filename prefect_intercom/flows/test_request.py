"""Test request: the docs' three "How to start integrating" steps as one Prefect flow, one artifact per step.

The steps, and why the token never leaves the block: `docs/flow-modules.md`, "test_request".
"""

from typing import Annotated, Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import ObjectNotFound
from pydantic import BaseModel, ConfigDict, Field

from prefect_intercom.catalog import PHONE_CALL_REDIRECTS, default_catalog, get_endpoint
from prefect_intercom.credentials import IntercomCredentials
from prefect_intercom.errors import (
    EndpointNotFoundError,
    IntercomAPIError,
    IntercomConfigurationError,
    IntercomTransportError,
    IntercomValidationError,
    ValidationIssue,
)
from prefect_intercom.flows import reports
from prefect_intercom.flows.parameters import (
    BLOCK_VERSION,
    DEFAULT_BLOCK_NAME,
    BlockName,
    DryRun,
    IntercomVersionParameter,
    OptionalObject,
    labelled,
    version_override,
)
from prefect_intercom.prepared import PreparedRequest
from prefect_intercom.tasks import log_answer, log_sending, phone_call_redirect_body

FLOW_NAME = "test-request"
DEPLOYMENT_NAME = "test-request"
SANDBOX_TEST_PHONE = "+14155550100"
DEFAULT_API = get_endpoint(PHONE_CALL_REDIRECTS).title
TEST_PHONE_ENV = "INTERCOM_TEST_PHONE"
ARTIFACT_KEYS = (
    "test-request-step-1-http-task",
    "test-request-step-2-api-reference",
    "test-request-step-3-response",
)
_STEP_OPTIONS: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False, "retries": 0}
_BODY_FIELDS = {row["name"]: row["description"] for row in get_endpoint(PHONE_CALL_REDIRECTS).body_fields}


class PhoneCallRedirectBody(BaseModel):
    """The request body of `POST /phone_call_redirects` (the UI renders it as a form).

    `phone` defaults to empty only so that the flow has no required parameter (the UI's
    "Quick run" then starts a run in one click, with the deployment's default parameters);
    the schema still marks it required, and an empty phone is refused before anything is
    sent. There is deliberately no default number: a test never texts a phone you did not
    choose.
    """

    model_config = ConfigDict(
        extra="forbid", frozen=True, title="Request body", json_schema_extra={"required": ["phone"]}
    )

    phone: str = Field(
        default="",
        title="Phone",
        description=_BODY_FIELDS["phone"] + " Use your own test phone, e.g. +14155550100.",
        examples=[SANDBOX_TEST_PHONE],
    )
    # `{}`, not None: the Run form sends the default back, and the server refuses a null for an object field.
    custom_attributes: OptionalObject = Field(
        default={},
        title="Custom attributes",
        description=_BODY_FIELDS["custom_attributes"] + ' Optional, e.g. {"issue_type": "Billing"}.',
    )

    def request_body(self) -> dict[str, Any]:
        """The JSON body to send (`custom_attributes` only when given: the Run form's empty object is none)."""
        return phone_call_redirect_body(self.phone, self.custom_attributes or None)


def missing_block_message(block_name: str, try_it: str | None = None) -> str:
    """What to do when there is no credentials block called `block_name`.

    Args:
        block_name: The block's name.
        try_it: How to try the command without an Intercom account (default: test-request's `--sandbox`).
    """
    try_it = try_it or f"prefect-intercom test-request --sandbox --phone {SANDBOX_TEST_PHONE}"
    return (
        f"No Intercom credentials block named {block_name!r} on this Prefect server "
        f"(block type {IntercomCredentials.get_block_type_slug()!r}). Create it once, then run again: "
        f"in Python, IntercomCredentials(access_token='<your token>', region='us').save({block_name!r}); "
        "or in the UI, Blocks > + > Intercom Credentials (run `prefect block register -m prefect_intercom` "
        f"if it is not listed) saved as {block_name!r}. To try without an Intercom account: {try_it}"
    )


def load_credentials(block_name: str, try_it: str | None = None) -> IntercomCredentials:
    """Load the `IntercomCredentials` block `block_name` (also accepts `intercom-credentials/NAME`).

    `try_it` says, in a missing block's message, how to try the command without an account.

    Raises:
        IntercomConfigurationError: There is no such block; the message says how to create it.
    """
    slug = IntercomCredentials.get_block_type_slug()
    name = block_name.strip().removeprefix(f"{slug}/")
    if not name:
        raise IntercomConfigurationError(missing_block_message(DEFAULT_BLOCK_NAME, try_it))
    try:
        return IntercomCredentials.load(name)
    except ValueError as error:  # Prefect's "Unable to find block document", raised from the API's 404
        if not isinstance(error.__cause__, ObjectNotFound):
            raise
        raise IntercomConfigurationError(missing_block_message(name, try_it)) from None


def _require_phone(endpoint_name: str, body: dict[str, Any]) -> None:
    """Refuse an empty phone with a hint on where to set it (before the schema's generic message)."""
    if endpoint_name == PHONE_CALL_REDIRECTS and not str(body.get("phone") or "").strip():
        hint = (
            "set your test phone, e.g. +14155550100: the deployment's default parameter body.phone "
            "(`prefect-intercom test-request serve --phone ...`, or Edit the deployment), or use a Custom run"
        )
        raise IntercomValidationError(endpoint_name, [ValidationIssue("/phone", "no phone number was given", hint)])


def _publish(step: int, markdown: str) -> None:
    create_markdown_artifact(markdown=markdown, key=ARTIFACT_KEYS[step - 1], description=reports.step_heading(step)[2:])


@task(name=reports.STEP_HTTP_TASK, **_STEP_OPTIONS)
def add_the_http_task(block_name: str, intercom_version: str | None = None) -> IntercomCredentials:
    """Step 1: load the credentials block and show host, region and version.

    Args:
        block_name: Name of the saved `IntercomCredentials` block.
        intercom_version: The `Intercom-Version` to use for this run instead of the block's.

    Returns:
        The credentials.
    """
    credentials = load_credentials(block_name)
    _publish(
        1,
        reports.connection_markdown(
            block_name=block_name,
            api_url=credentials.api_url,
            region=credentials.region,
            block_version=credentials.intercom_version,
            version_override=intercom_version,
            base_url_set=credentials.base_url is not None,
            timeout=credentials.timeout,
        ),
    )
    get_run_logger().info(
        "Loaded block %r: host %s, region %s, Intercom-Version %s",
        block_name,
        credentials.api_url,
        credentials.region,
        intercom_version or credentials.intercom_version,
    )
    return credentials


@task(name=reports.STEP_FIND_API, **_STEP_OPTIONS)
def find_the_api_and_load_its_reference(
    credentials: IntercomCredentials, api: str, body: dict[str, Any], intercom_version: str | None = None
) -> PreparedRequest:
    """Step 2: find the endpoint, publish its reference and the prepared request, validate.

    Args:
        credentials: The loaded block.
        api: What to search the catalogue for, e.g. `POST /phone_call_redirects` or `phone`.
        body: The JSON body.
        intercom_version: The `Intercom-Version` for this run, if not the block's.

    Returns:
        The prepared request (it holds no token).

    Raises:
        EndpointNotFoundError: Nothing (or several endpoints) matches `api`.
        IntercomValidationError: The body or headers are invalid; nothing will be sent.
    """
    logger = get_run_logger()
    try:
        endpoint = default_catalog().find(api)
    except EndpointNotFoundError as error:
        _publish(2, reports.not_found_markdown(error))
        raise
    logger.info("Found %s (%s): %s", endpoint.title, endpoint.name, endpoint.summary)
    overrides = {"intercom_version": intercom_version} if intercom_version else {}
    with credentials.get_client(**overrides) as client:
        shown = {"query": api, "endpoint": endpoint, "body": body}
        try:
            _require_phone(endpoint.name, body)
            prepared = client.prepare(endpoint, body)
        except IntercomValidationError as error:
            _publish(2, reports.reference_markdown(**shown, url=f"{client.base_url}{endpoint.path}", error=error))
            logger.error("The request is invalid; nothing will be sent. %s", error)
            raise
    _publish(2, reports.reference_markdown(**shown, url=prepared.url, prepared=prepared))
    logger.info("Prepared %s %s; the body is valid", prepared.method, prepared.url)
    return prepared


@task(name=reports.STEP_TEST_REQUEST, **_STEP_OPTIONS)
def send_test_request(credentials: IntercomCredentials, prepared: PreparedRequest, dry_run: bool = False) -> dict:
    """Step 3: send the request once (never retried) and publish Intercom's answer.

    Args:
        credentials: The loaded block.
        prepared: The request from step 2.
        dry_run: Publish what would be sent, and send nothing.

    Returns:
        A summary: `sent`, `status_code`, `request_id`, `elapsed_ms` and Intercom's `response`.

    Raises:
        IntercomAPIError: Intercom refused the request (the artifact has the code, request id and a hint).
        IntercomTransportError: No answer came back (the artifact says whether it may have been sent).
    """
    logger = get_run_logger()
    summary: dict[str, Any] = {"endpoint": prepared.endpoint.title, "url": prepared.url, "sent": False}
    if dry_run:
        _publish(3, reports.dry_run_markdown(prepared))
        logger.info("Dry run: nothing was sent")
        return summary
    log_sending(logger, prepared)
    with credentials.get_client() as client:
        try:
            response = client.send(prepared)
        except IntercomAPIError as error:
            _publish(3, reports.api_error_markdown(prepared, error))
            logger.error("Test request failed: %s", error)
            raise
        except IntercomTransportError as error:
            _publish(3, reports.transport_error_markdown(prepared, error))
            logger.error("Test request got no answer: %s", error)
            raise
    _publish(3, reports.response_markdown(prepared, response))
    log_answer(logger, response)
    summary.update(
        sent=True,
        status_code=response.status_code,
        request_id=response.request_id,
        elapsed_ms=round(response.elapsed_ms, 1),
        response=response.data,
    )
    return summary


@flow(name=FLOW_NAME, persist_result=False)
def test_request(
    body: Annotated[
        PhoneCallRedirectBody,
        labelled("Request body", "The phone that receives the SMS (E.164) and optional custom attributes."),
    ] = PhoneCallRedirectBody(),  # noqa: B008 - frozen; see its docstring
    block_name: BlockName = DEFAULT_BLOCK_NAME,
    intercom_version: IntercomVersionParameter = BLOCK_VERSION,
    dry_run: DryRun = False,
    api: Annotated[
        str,
        labelled(
            "API to test",
            'A catalogue name, "METHOD /path" or words such as "deflect calls to messenger".',
        ),
    ] = DEFAULT_API,
) -> dict:
    """Test request: run the docs' three integration steps and see Intercom's answer.

    Sends one real request (Intercom texts the phone a Messenger link) unless `dry_run` is on.
    The run fails on an invalid body or an Intercom error; its artifacts say why.

    Args:
        body: The request body: the phone that receives the SMS (E.164, e.g. +14155550100) and
            optional custom attributes.
        block_name: Name of your saved Intercom Credentials block.
        intercom_version: Intercom-Version for this run only; "the block's" keeps the block's.
        dry_run: Validate and show the prepared request, but send nothing.
        api: The API to find in the catalogue: a name, "METHOD /path" or words such as
            "deflect calls to messenger".
    """
    intercom_version = version_override(intercom_version)
    credentials = add_the_http_task(block_name, intercom_version)
    try:
        prepared = find_the_api_and_load_its_reference(credentials, api, body.request_body(), intercom_version)
    except IntercomValidationError as error:
        _publish(3, reports.not_sent_markdown(error))
        raise
    return send_test_request(credentials, prepared, dry_run)
