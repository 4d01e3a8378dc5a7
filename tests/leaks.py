"""Find pieces of a secret, or a full phone number, in texts and in everything an object holds.

Written apart from the package's own redaction, so that the tests do not judge the code by
itself: a piece is any `PIECE`-character substring of the token, looked for case-insensitively
in the text as it is, URL-decoded, and with `\\uXXXX`, `\\/` and `&#...;` escapes decoded.
"""

from __future__ import annotations

import html
import re
import traceback
import urllib.parse
from collections.abc import Iterable
from typing import Any

PIECE = 10
_UNICODE_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_PHONE_RUN = re.compile(r"\+?\d[\d \t().\-/]*\d")


def pieces(secret: str, length: int = PIECE) -> set[str]:
    """Every `length`-character substring of `secret`, ASCII-lower-cased."""
    lowered = secret.translate(_ASCII_LOWER)
    return {lowered[start : start + length] for start in range(len(lowered) - length + 1)}


def _views(text: str) -> list[str]:
    """`text` as it is, URL-decoded, JSON-unescaped and HTML-unescaped, each ASCII-lower-cased."""
    decoded = _UNICODE_ESCAPE.sub(lambda match: chr(int(match.group(1), 16)), text).replace("\\/", "/")
    views = [text, urllib.parse.unquote(text), decoded, html.unescape(text)]
    return [view.translate(_ASCII_LOWER) for view in views]


def exposed(texts: str | Iterable[str], secret: str, length: int = PIECE) -> list[str]:
    """The pieces of `secret` found in `texts` (empty: none); fast on texts of many megabytes.

    Any `length`-character piece holds one of the secret's `length // 2`-character anchors at
    a multiple of `length // 2`: the anchors are found with one regular expression, and each
    hit is checked against the pieces around it.
    """
    lowered = secret.translate(_ASCII_LOWER)
    step = max(1, length // 2)
    anchors: dict[str, list[int]] = {}
    for at in range(0, len(lowered) - step + 1, step):
        anchors.setdefault(lowered[at : at + step], []).append(at)
    search = re.compile("|".join(re.escape(anchor) for anchor in anchors))
    found: set[str] = set()
    for text in [texts] if isinstance(texts, str) else texts:
        for view in _views(text):
            for match in search.finditer(view):
                for at in anchors[match.group()]:
                    for start in range(max(0, at + step - length), min(at, len(lowered) - length) + 1):
                        offset = match.start() - (at - start)
                        piece = lowered[start : start + length]
                        if offset >= 0 and view[offset : offset + length] == piece:
                            found.add(piece)
    return sorted(found)


def phone_shown(texts: str | Iterable[str], phone: str) -> bool:
    """Whether the full digits of `phone` appear in one phone-like run of `texts` (spaces and punctuation allowed)."""
    digits = re.sub(r"\D", "", phone)
    for text in [texts] if isinstance(texts, str) else texts:
        for view in (text, urllib.parse.unquote(text)):
            if digits in view or any(digits in re.sub(r"\D", "", run) for run in _PHONE_RUN.findall(view)):
                return True
    return False


def reachable_texts(value: Any, limit: int = 20_000) -> list[str]:
    """Every text reachable from `value`: its str and repr, an exception's traceback text, and,
    recursively, its arguments, attributes, `__context__`, `__cause__`, items, keys and slots.

    Frames are not walked (a traceback's frames hold the caller's locals, the credentials block
    among them); everything the object itself refers to is.
    """
    texts: list[str] = []
    seen: set[int] = set()
    stack: list[Any] = [value]
    while stack and len(seen) < limit:
        item = stack.pop()
        if id(item) in seen or item is None or isinstance(item, (bool, int, float)):
            continue
        seen.add(id(item))
        if isinstance(item, str):
            texts.append(item)
            continue
        if isinstance(item, (bytes, bytearray, memoryview)):
            texts.append(bytes(item).decode("latin-1"))
            continue
        texts.extend(_describe(item))
        if isinstance(item, BaseException):
            stack += [item.args, item.__context__, item.__cause__, getattr(item, "__notes__", None)]
        if isinstance(item, dict):
            stack += list(item.keys()) + list(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack += list(item)
        raw = getattr(type(item), "raw", None)
        if raw is not None and hasattr(item, "raw"):  # httpx.Headers: every (name, value) as bytes
            stack.append(item.raw)
        for name in getattr(type(item), "__slots__", ()) or ():
            stack.append(getattr(item, name, None))
        attributes = getattr(item, "__dict__", None)
        if isinstance(attributes, dict):
            stack.append(attributes)
        secret = getattr(item, "get_secret_value", None)
        if callable(secret):
            stack.append(secret())
    return texts


def _describe(item: Any) -> list[str]:
    texts = []
    for render in (str, repr):
        try:
            texts.append(render(item))
        except Exception:
            pass
    if isinstance(item, BaseException):
        texts.append("".join(traceback.format_exception(item)))
    return texts
