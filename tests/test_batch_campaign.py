"""The campaign key (`prefect_intercom.batch.campaign`): the content and the app, nothing else.

The flow's and the command's use of it (a resumed campaign texts nobody twice): tests/test_deflect_calls_resume.py.
"""

from __future__ import annotations

import hashlib
import re

import pytest

from prefect_intercom.batch.campaign import campaign_key
from prefect_intercom.batch.engine import check_batch_key

CONTENT = hashlib.sha256(b"phone\n+14155550100\n").hexdigest()
API = "https://api.intercom.io"


def test_the_key_is_a_stable_hash_in_letters_whatever_the_case_or_trailing_slash() -> None:
    key = campaign_key(CONTENT, API)
    assert re.fullmatch(r"campaign-[a-p]{20}", key)
    assert campaign_key(f"  {CONTENT.upper()} ", f"{API}/") == key == campaign_key(CONTENT, API)


def test_other_content_another_app_or_a_nonce_make_another_campaign() -> None:
    keys = {
        campaign_key(CONTENT, API),
        campaign_key(hashlib.sha256(b"other").hexdigest(), API),
        campaign_key(CONTENT, "https://api.eu.intercom.io"),
        campaign_key(CONTENT, API, nonce="flow-run-1"),
        campaign_key(CONTENT, API, nonce="flow-run-2"),
    }
    assert len(keys) == 5


def test_a_campaign_key_passes_the_batch_key_check() -> None:
    for number in range(500):  # letters a-p only: never a run of digits taken for a phone
        check_batch_key(campaign_key(hashlib.sha256(str(number).encode()).hexdigest(), API))


@pytest.mark.parametrize(("content", "api_url"), [("callers.csv", API), ("ab" * 31, API), (CONTENT, " / ")])
def test_what_is_not_a_sha256_or_an_api_root_is_refused(content: str, api_url: str) -> None:
    with pytest.raises(ValueError, match=r"SHA-256|api_url"):
        campaign_key(content, api_url)
