"""Bounded requests: the whole-request deadline, and answers read to at most a limit."""

from __future__ import annotations

import asyncio
import gzip
import time

import httpx
import pytest

from prefect_intercom.reading import (
    CUT_AT_DEADLINE,
    CUT_EXTENSION,
    CUT_TOO_LARGE,
    MAX_GRACE,
    Deadline,
    aread_bounded,
    deadline_for,
    read_bounded,
    within,
)

REQUEST = httpx.Request("POST", "http://127.0.0.1:9/phone_call_redirects")


def _streamed(body: bytes, **headers: str) -> httpx.Response:
    """An answer whose body has not been read, as `client.send(..., stream=True)` gives it."""
    return httpx.Response(200, headers=headers, stream=httpx.ByteStream(body), request=REQUEST)


def test_a_deadline_is_the_timeout_plus_a_tenth_of_it_at_most_a_second_and_none_without_a_timeout() -> None:
    before = time.monotonic()
    short, long = deadline_for(5.0), deadline_for(30.0)

    assert short is not None and short.seconds == 5.5
    assert long is not None and long.seconds == 30.0 + MAX_GRACE
    assert before + 5.5 <= short.at <= time.monotonic() + 5.5
    assert deadline_for(None) is None and deadline_for(0) is None
    assert "deadline of 5.5 s" in short.describe()


def test_a_small_answer_is_read_whole_and_unmarked() -> None:
    response = read_bounded(_streamed(b'{"ok": true}'), deadline_for(5.0))

    assert response.content == b'{"ok": true}'
    assert CUT_EXTENSION not in response.extensions


@pytest.mark.parametrize("compressed", [False, True])
def test_a_large_answer_is_cut_at_the_limit_and_marked(compressed: bool) -> None:
    body = b"x" * 5000
    response = (
        read_bounded(_streamed(gzip.compress(body), **{"content-encoding": "gzip"}), limit=1000)
        if compressed
        else read_bounded(_streamed(body), limit=1000)
    )

    assert response.content == b"x" * 1000
    assert response.extensions[CUT_EXTENSION] == CUT_TOO_LARGE


def test_an_undecodable_body_keeps_its_status_with_a_note() -> None:
    response = read_bounded(_streamed(b"not gzip", **{"content-encoding": "gzip"}))

    assert response.status_code == 200
    assert b"could not be decoded (Content-Encoding: gzip)" in response.content


async def test_the_async_read_is_bounded_the_same_way() -> None:
    response = httpx.Response(200, stream=httpx.ByteStream(b"y" * 3000), request=REQUEST)

    read = await aread_bounded(response, deadline_for(5.0), limit=100)

    assert read.content == b"y" * 100
    assert read.extensions[CUT_EXTENSION] == CUT_TOO_LARGE
    assert CUT_AT_DEADLINE != CUT_TOO_LARGE


async def test_within_raises_a_read_timeout_once_the_deadline_passes() -> None:
    with pytest.raises(httpx.ReadTimeout) as raised:
        await within(Deadline(time.monotonic() + 0.05, 0.05), asyncio.sleep(5))

    assert raised.value.__context__ is None  # raised outside the `except`: nothing chained
    assert await within(None, asyncio.sleep(0, result="done")) == "done"


@pytest.mark.parametrize("encoding", [None, "gzip"])
def test_a_read_answers_repr_holds_no_reason_phrase_a_server_chose(encoding: str | None) -> None:
    # A hostile server echoing the token in its reason phrase: the read answer (a local of every frame
    # up to `parse_response`, printed by tracebacks that show locals) shows the status's own phrase.
    echoed = b"X tok_SECRET_in_the_phrase"
    body = b"{}" if encoding is None else gzip.compress(b"{}")
    headers = {} if encoding is None else {"Content-Encoding": encoding}
    extensions = {"reason_phrase": echoed, "http_version": b"HTTP/1.1"}
    response = httpx.Response(500, headers=headers, content=body, request=REQUEST, extensions=extensions)
    answer = read_bounded(response)
    assert answer.content == b"{}"
    assert repr(answer) == "<Response [500 Internal Server Error]>"
