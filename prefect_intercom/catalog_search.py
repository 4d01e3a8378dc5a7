"""The ranked search over catalogue endpoints: words, a crude stemmer, synonyms and weights.

How `Catalog.search` ranks (stated once, here):

- An exact name, path or `METHOD /path` (any case) scores 100.
- Otherwise every query word (lower-cased, stop words dropped, crudely stemmed so that
  "calls", "caller" and "call" meet) is looked up in each endpoint's fields, weighted by
  where it is found: name and path 4, summary 2, rest of the description 1, request field
  names 1. A word found in several fields counts in each. A word that only matches as a
  prefix ("redir"), a near miss ("mesenger") or a listed synonym ("text" for "sms") counts
  half. The score is the average over the query's words, plus 0.5 when the query names the
  endpoint's HTTP method.
- A query of the form `METHOD /path...` only matches endpoints with that method: asking for
  `GET /phone_call_redirects` must never find the `POST`.
- Endpoints scoring 0 are left out (the catalogue then says what exists).

This module knows nothing of where endpoints come from; `prefect_intercom.catalog` indexes each
endpoint once with `index_endpoint` and scores it per query with `score`.
"""

from __future__ import annotations

import difflib
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prefect_intercom.catalog import Endpoint

HTTP_METHODS = frozenset({"get", "post", "put", "patch", "delete", "head", "options"})
EXACT_MATCH_SCORE = 100.0

EndpointIndex = list[tuple[float, frozenset[str]]]
"""An endpoint's searchable fields as (weight, word stems) pairs."""

_WORD = re.compile(r"[a-z0-9]+")
_STOP_WORDS = frozenset(
    {"a", "an", "the", "to", "of", "for", "and", "or", "in", "on", "api", "with", "by", "from", "my", "me"}
)
_METHOD_AND_PATH = re.compile(r"^\s*(?P<method>[a-z]+)\s+(?P<path>/\S*)\s*$", re.IGNORECASE)
# A handful of words people use for what the docs call something else (both ways).
_SYNONYM_GROUPS = (
    ("sms", "text", "txt"),
    ("redirect", "deflect", "divert", "forward", "transfer"),
    ("messenger", "chat"),
    ("phone", "mobile", "cell", "number"),
)
_EXACT, _PARTIAL = 1.0, 0.5
_NAME_WEIGHT, _SUMMARY_WEIGHT, _DESCRIPTION_WEIGHT, _FIELD_WEIGHT = 4.0, 2.0, 1.0, 1.0
_METHOD_BONUS = 0.5


def index_endpoint(endpoint: Endpoint) -> EndpointIndex:
    """The weighted word stems of an endpoint's searchable fields.

    Args:
        endpoint: The catalogue entry.

    Returns:
        (weight, stems) for name and path, summary, the rest of the description, and body field names.
    """
    name_and_path = f"{endpoint.name} {endpoint.path}".replace("_", " ").replace("/", " ").replace("-", " ")
    field_names = " ".join(row["name"] for row in endpoint.body_fields).replace("_", " ").replace(".", " ")
    summary = _stems(endpoint.summary)
    return [
        (_NAME_WEIGHT, _stems(name_and_path)),
        (_SUMMARY_WEIGHT, summary),
        (_DESCRIPTION_WEIGHT, _stems(endpoint.description) - summary),
        (_FIELD_WEIGHT, _stems(field_names)),
    ]


def score(endpoint: Endpoint, index: EndpointIndex, query: str) -> tuple[float, tuple[str, ...]]:
    """How well `query` matches `endpoint` (the rules in this module's docstring).

    Args:
        endpoint: The catalogue entry.
        index: Its `index_endpoint`.
        query: Free text, a name, a path or `METHOD /path`.

    Returns:
        The score (0: no match) and the query words that matched something, in query order.
    """
    normalized = " ".join(query.lower().split())
    path = endpoint.path.lower()
    exact = {endpoint.name.lower(), path, path.lstrip("/"), endpoint.title.lower()}
    if normalized in exact:
        return EXACT_MATCH_SCORE, tuple(_words(query))
    method_and_path = _METHOD_AND_PATH.match(query)
    if (
        method_and_path
        and method_and_path["method"].lower() in HTTP_METHODS
        and method_and_path["method"].upper() != endpoint.method
    ):
        return 0.0, ()
    words = [word for word in _words(query) if word not in HTTP_METHODS]
    bonus = _METHOD_BONUS if endpoint.method.lower() in _words(query) else 0.0
    if not words:
        return (bonus if bonus and method_and_path is None else 0.0), ()
    total, matched = 0.0, []
    for word in words:
        word_score = sum(weight * _match(word, stems) for weight, stems in index)
        if word_score > 0:
            total += word_score
            matched.append(word)
    if not matched:
        return 0.0, ()
    return total / len(words) + bonus, tuple(matched)


def _words(text: str) -> list[str]:
    return [word for word in _WORD.findall(text.lower()) if word not in _STOP_WORDS]


def _stem(word: str) -> str:
    """A crude stemmer: enough for "calls"/"caller"/"call" or "deflection"/"deflect" to meet."""
    if len(word) > 4 and word.endswith("ies"):
        word = word[:-3] + "y"
    elif word.endswith("sses"):
        word = word[:-2]
    elif len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for suffix in ("ations", "ation", "ions", "ion", "ing", "ed", "er"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            word = word[: -len(suffix)]
            break
    return word[:-1] if len(word) > 4 and word.endswith("e") else word


_SYNONYMS: dict[str, frozenset[str]] = {
    _stem(word): frozenset(_stem(other) for other in group if other != word)
    for group in _SYNONYM_GROUPS
    for word in group
}


def _stems(text: str) -> frozenset[str]:
    return frozenset(_stem(word) for word in _words(text))


def _match(word: str, stems: frozenset[str]) -> float:
    """How well one query word matches a set of stems: 1 exact, 0.5 partial, 0 not at all."""
    stem = _stem(word)
    if stem in stems:
        return _EXACT
    if _SYNONYMS.get(stem, frozenset()) & stems:
        return _PARTIAL
    if len(word) >= 3 and any(candidate.startswith(stem) for candidate in stems):
        return _PARTIAL
    if len(stem) >= 5 and difflib.get_close_matches(stem, stems, n=1, cutoff=0.8):
        return _PARTIAL
    return 0.0
