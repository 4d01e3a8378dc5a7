r"""Remove every piece of a secret from a text, then (and only then) shorten it.

`Redactor.redact` replaces every run of `PIECE` or more characters of the token, in any form a
server may echo it (escaped, upper-cased), with `[REDACTED]`; `cut` shortens a text already
redacted (docs/security.md).
"""

from __future__ import annotations

import html.entities
import os.path
import re
from bisect import bisect_right
from collections.abc import Callable

REDACTED = "[REDACTED]"
# No run of this many characters of the token survives redaction (shorter tokens: the token).
PIECE = 8
_ANCHOR = 4  # `PIECE` >= 2 * `_ANCHOR`: every piece of `PIECE` characters holds an aligned anchor
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
# Escapes a reader may decode: %XX (URL); \uXXXX, \xXX, \/ (JSON, JavaScript); character
# references (HTML, read exactly as `html.unescape` reads them: `&#116`, `&sol;`, `&amp`).
_URL_ESCAPE = r"%(?P<url>[0-9A-Fa-f]{2})"
# One or more backslashes: a JSON text escaped again (`\\\\u002f` in a body whose message says `\\u002f`) is read
# through both layers, as a reader unescaping twice would.
_JSON_ESCAPE = r"\\+u(?P<u>[0-9A-Fa-f]{4})|\\+x(?P<x>[0-9A-Fa-f]{2})|\\+(?P<slash>/)"
_HTML_ESCAPE = r"(?P<html>&(?:#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?))"
# Each scheme on its own (what a reader of one of them sees), and all of them at once.
_SCHEMES = (
    ("%", re.compile(_URL_ESCAPE)),
    ("\\", re.compile(_JSON_ESCAPE)),
    ("&", re.compile(_HTML_ESCAPE)),
)
_ALL_SCHEMES = re.compile(f"{_URL_ESCAPE}|{_JSON_ESCAPE}|{_HTML_ESCAPE}")
_CONTROLS = dict.fromkeys([*range(0x20), *range(0x7F, 0xA0)], "\ufffd")


class Redactor:
    """Removes a secret (an access token) from texts, whatever form it was echoed in.

    Args:
        secret: The secret; an empty one redacts nothing.

    Example:
        ```python
        redactor = Redactor("tok_abcdefghijklmnop")
        redactor.redact("Bearer tok_abcdefghijk")  # 'Bearer [REDACTED]'
        redactor.redact("tok%5Fabcdefghijklmnop")  # '[REDACTED]'
        ```
    """

    __slots__ = ("_anchor_search", "_anchors", "_lowered", "_piece")

    def __init__(self, secret: str) -> None:
        self._lowered = secret.translate(_ASCII_LOWER)
        self._piece = min(PIECE, len(secret))
        size = min(_ANCHOR, len(secret))
        # Anchors at every multiple of `size` (of every position for secrets shorter than `PIECE`):
        # any run of `_piece` characters of the secret holds one.
        self._anchors: dict[str, list[int]] = {}
        for start in range(0, len(secret) - size + 1, size if len(secret) >= PIECE else 1):
            self._anchors.setdefault(self._lowered[start : start + size], []).append(start)
        pattern = "|".join(re.escape(anchor) for anchor in sorted(self._anchors, key=len, reverse=True))
        self._anchor_search = re.compile(pattern).search if secret else None

    def __repr__(self) -> str:
        return "Redactor([REDACTED])"

    def redact(self, text: str) -> str:
        """`text` with every run of `PIECE` or more characters of the secret replaced by `[REDACTED]`.

        Runs are looked for in the text as it is and, when it holds escapes, as a reader of
        each escaping scheme (and of all of them at once) would decode it.
        """
        if self._anchor_search is None or len(text) < self._piece:  # no view of a text is longer than it
            return text
        return hide_in_views(text, self._spans, REDACTED)

    def _spans(self, text: str) -> list[tuple[int, int]]:
        """Maximal runs of the secret's characters in `text` (any ASCII case), `_piece` long or more, in order."""
        lowered = text.lower() if text.isascii() else text.translate(_ASCII_LOWER)  # the same; `lower` is faster
        secret, size, found = self._lowered, min(_ANCHOR, len(self._lowered)), []
        covered_to, position = -1, 0
        while (match := self._anchor_search(lowered, position)) is not None:
            at = match.start()
            position = at + 1
            if at + size <= covered_to:
                continue  # inside a run already found
            best: tuple[int, int] | None = None
            for offset in self._anchors[match.group()]:  # grow the anchor both ways while the secret goes on
                left = _shared_start(lowered[max(0, at - offset) : at][::-1], secret[:offset][::-1])
                tail = secret[offset + size :]
                right = _shared_start(lowered[at + size : at + size + len(tail)], tail)
                start, stop = at - left, at + size + right
                if stop - start >= self._piece and (best is None or stop - start > best[1] - best[0]):
                    best = (start, stop)
            if best is not None:
                found.append(best)
                covered_to = max(covered_to, best[1])
        return found


def _shared_start(first: str, second: str) -> int:
    """How many characters `first` and `second` share from their start."""
    return len(os.path.commonprefix((first, second)))  # noqa: RUF071 - characters are meant, not paths


def cut(text: str, limit: int) -> str:
    """`text` safe to show on one line, shortened to `limit` characters (`...` marks a cut).

    White space is collapsed and control characters (a terminal's escape sequences among
    them) become U+FFFD. Only ever give it a text that has already been redacted.
    """
    text = " ".join(text.split()).translate(_CONTROLS)
    return text if len(text) <= limit else text[: max(0, limit - 3)] + "..."


def unchanged(text: str) -> str:
    """`text` as it is: the redaction (or mask) of a text that holds nothing to hide."""
    return text


class _Decoded:
    """A text with escapes decoded, and the way back to positions in the original.

    Attributes:
        text: The decoded text.
    """

    __slots__ = ("_decoded_at", "_escapes", "text")

    def __init__(self, original: str, pattern: re.Pattern[str] | None) -> None:
        parts: list[str] = []
        # For each escape: where its replacement starts in the decoded text (apart, for `bisect`), and
        # its length there, its span in the original and the characters gained so far (original - decoded).
        self._decoded_at: list[int] = []
        self._escapes: list[tuple[int, int, int, int]] = []
        last = gained = 0
        for match in pattern.finditer(original) if pattern is not None else ():
            replacement = _unescape(match)
            if replacement is None:
                continue
            parts += [original[last : match.start()], replacement]
            self._decoded_at.append(match.start() - gained)  # the characters gained so far are before it
            gained += (match.end() - match.start()) - len(replacement)
            self._escapes.append((len(replacement), match.start(), match.end(), gained))
            last = match.end()
        parts.append(original[last:])
        self.text = "".join(parts) if self._escapes else original

    @property
    def escaped(self) -> bool:
        """Whether any escape was decoded."""
        return bool(self._escapes)

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """The span of the original holding decoded characters `start` to `end` (exclusive)."""
        return self._position(start, before=True), self._position(end - 1, before=False)

    def _position(self, index: int, *, before: bool) -> int:
        """Where decoded character `index` starts (`before`) or ends in the original; an escape counts whole."""
        escape = bisect_right(self._decoded_at, index) - 1
        length, start, end, gained = self._escapes[escape] if escape >= 0 else (0, 0, 0, 0)
        if escape >= 0 and index < self._decoded_at[escape] + length:
            return start if before else end
        return index + gained if before else index + gained + 1


def views(text: str) -> list[_Decoded]:
    """`text` as it is, then as decoded by each escaping scheme it uses, and by all at once if several."""
    decoded = [_Decoded(text, pattern) for introducer, pattern in _SCHEMES if introducer in text]
    views = [_Decoded(text, None), *(view for view in decoded if view.escaped)]
    if len(views) > 2:
        views.append(_Decoded(text, _ALL_SCHEMES))
    return views


def _unescape(match: re.Match[str]) -> str | None:
    """What an escape stands for (`None`: not an escape after all)."""
    groups = match.groupdict()
    if groups.get("html"):
        decoded = html.unescape(match.group())
        return None if decoded == match.group() else decoded
    if groups.get("slash"):
        return "/"
    digits = groups.get("url") or groups.get("u") or groups.get("x")
    return chr(int(digits, 16)) if digits else None


def hide_in_views(text: str, spans_of: Callable[[str], list[tuple[int, int]]], mark: str) -> str:
    """`text` with what `spans_of` finds in it, as it is or in any decoded view (`views`), replaced by `mark`."""
    if not has_escapes(text):  # the text is its only view
        spans = spans_of(text)
        return replace_spans(text, spans, mark) if spans else text
    spans: list[tuple[int, int]] = []
    for view in views(text):
        found = spans_of(view.text)
        spans += [view.original_span(start, end) for start, end in found] if view.escaped else found
    return replace_spans(text, whole_escapes(text, spans), mark) if spans else text


def has_escapes(text: str) -> bool:
    r"""Whether `text` holds a character that may start an escape: `%`, `\` or `&`."""
    return "%" in text or "\\" in text or "&" in text


def whole_escapes(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """`spans` widened so that none cuts an escape in two (what is left of one could mean another character)."""
    if not has_escapes(text):
        return spans
    escapes = [match.span() for match in _ALL_SCHEMES.finditer(text)]
    starts = [start for start, _ in escapes]
    widened = []
    for start, end in spans:
        for edge in (start, end):
            escape = bisect_right(starts, edge) - 1
            if escape >= 0 and starts[escape] < edge < escapes[escape][1]:
                start, end = min(start, starts[escape]), max(end, escapes[escape][1])
        widened.append((start, end))
    return widened


def replace_spans(text: str, spans: list[tuple[int, int]], mark: str = REDACTED) -> str:
    """`text` with each span (merged when they touch or overlap) replaced by `mark` (`[REDACTED]`)."""
    parts: list[str] = []
    last = 0
    for start, end in sorted(spans):
        if parts and start <= last:  # touches or overlaps the span before: one mark for both
            last = max(last, end)
            continue
        parts += [text[last:start], mark]
        last = end
    parts.append(text[last:])
    return "".join(parts)
