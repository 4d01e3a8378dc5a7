"""The ledger key's derived values (`prefect_intercom.batch.ledger_secret`).

The key itself, on a Prefect server: tests/test_batch_ledger.py.
"""

from __future__ import annotations

from prefect_intercom.batch.ledger_secret import digest_key, key_check, token_tag

KEY, OTHER = b"k" * 32, b"o" * 32


def test_each_value_depends_on_the_ledger_key_and_reveals_nothing_of_its_input() -> None:
    assert key_check(KEY) == key_check(KEY) != key_check(OTHER) and len(key_check(KEY)) == 16
    assert digest_key(KEY, "api.intercom.io", "campaign-7") != digest_key(OTHER, "api.intercom.io", "campaign-7")
    assert digest_key(KEY, "api.intercom.io", "campaign-7") != digest_key(KEY, "api.eu.intercom.io", "campaign-7")
    tag = token_tag(KEY, "tok_secret_value")
    assert tag != token_tag(OTHER, "tok_secret_value") and "tok" not in tag and len(tag) == 16
