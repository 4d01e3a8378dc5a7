"""The endpoint catalogue: one `Endpoint` per generated docs page, and a search over them.

Everything here is read from the files `schemagen` writes into the packaged
`prefect_intercom.schemas` folder; adding an endpoint means adding its docs page and
regenerating, nothing else.

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
- Endpoints scoring 0 are left out; if none is left, `EndpointNotFoundError` lists what exists.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from importlib.abc import Traversable
from os import PathLike
from pathlib import Path
from typing import Any

from prefect_intercom.errors import IntercomError

SCHEMA_PACKAGE = "prefect_intercom.schemas"
ENDPOINT_SUFFIX = ".endpoint.json"
PHONE_CALL_REDIRECTS = "phone_call_redirects"
HTTP_METHODS = frozenset({"get", "post", "put", "patch", "delete", "head", "options"})
EXACT_MATCH_SCORE = 100.0

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


class EndpointNotFoundError(IntercomError, LookupError):
    """No catalogue entry matches a name or query; the message lists what exists."""


class AmbiguousQueryError(EndpointNotFoundError):
    """A query matches several endpoints equally well; the message lists them.

    Attributes:
        hits: The tied best matches.
    """

    def __init__(self, message: str, hits: list[SearchHit]) -> None:
        self.hits = hits
        super().__init__(message)


@dataclass(frozen=True)
class Endpoint:
    """One API operation, as its documentation page describes it.

    Attributes:
        name: Catalogue name, e.g. `phone_call_redirects`.
        method: HTTP method, e.g. `POST`.
        path: URL path below the API host, e.g. `/phone_call_redirects`.
        summary: The first sentence of the description.
        description: The page's full description.
        request_schema: JSON Schema of the body.
        headers_schema: JSON Schema of the headers.
        headers: The header table rows (name, type, required, description, enum, default).
        body_fields: The body table rows.
        steps: The page's "How to start integrating" steps (`text`, `details`).
    """

    name: str
    method: str
    path: str
    summary: str
    description: str
    request_schema: dict[str, Any] = field(repr=False)
    headers_schema: dict[str, Any] = field(repr=False)
    headers: list[dict[str, Any]] = field(repr=False, default_factory=list)
    body_fields: list[dict[str, Any]] = field(repr=False, default_factory=list)
    steps: list[dict[str, Any]] = field(repr=False, default_factory=list)

    @property
    def title(self) -> str:
        """`METHOD /path`, as the docs page heads it."""
        return f"{self.method} {self.path}"

    def header_enum(self, header: str) -> list[str]:
        """The allowed values of a header (empty when any value is allowed)."""
        return list(self.headers_schema["properties"].get(header, {}).get("enum", []))

    def header_default(self, header: str) -> str | None:
        """The documented default of a header, if any."""
        return self.headers_schema["properties"].get(header, {}).get("default")

    def reference_markdown(self) -> str:
        """The reference documentation as markdown: description, headers and body field tables."""
        lines = [f"## `{self.title}`", "", self.description, "", "### Request headers", ""]
        lines += _markdown_table(self.headers, with_values=True)
        lines += ["", "### Request body fields", ""]
        lines += _markdown_table(self.body_fields, with_values=False)
        return "\n".join(lines)


@dataclass(frozen=True)
class SearchHit:
    """A catalogue entry and how well it matched a query (higher is better).

    Attributes:
        endpoint: The matching endpoint.
        score: The rank score (`EXACT_MATCH_SCORE` for an exact name, path or title).
        matched: The query words that matched something, in query order.
    """

    endpoint: Endpoint
    score: float
    matched: tuple[str, ...] = ()


class Catalog:
    """A set of endpoints with lookup by name and ranked search.

    Args:
        endpoints: The entries; names must be unique.

    Example:
        ```python
        from prefect_intercom.catalog import default_catalog

        catalog = default_catalog()
        endpoint = catalog.find("deflect calls to messenger")
        print(endpoint.title)  # POST /phone_call_redirects
        ```
    """

    def __init__(self, endpoints: Iterable[Endpoint]) -> None:
        self._endpoints: dict[str, Endpoint] = {}
        for endpoint in endpoints:
            if endpoint.name in self._endpoints:
                raise ValueError(f"two catalogue entries are named {endpoint.name!r}")
            self._endpoints[endpoint.name] = endpoint
        self._index = {name: _index(endpoint) for name, endpoint in self._endpoints.items()}

    def __iter__(self) -> Iterator[Endpoint]:
        return iter(self._endpoints.values())

    def __len__(self) -> int:
        return len(self._endpoints)

    def __contains__(self, name: object) -> bool:
        return name in self._endpoints

    def __repr__(self) -> str:
        return f"Catalog({self.names!r})"

    @property
    def names(self) -> list[str]:
        """Every endpoint name, sorted."""
        return sorted(self._endpoints)

    def get(self, name: str) -> Endpoint:
        """The endpoint called `name`.

        Raises:
            EndpointNotFoundError: No such name; the message lists every endpoint.
        """
        try:
            return self._endpoints[name]
        except KeyError:
            raise EndpointNotFoundError(f"No endpoint named {name!r}. {self.listing()}") from None

    def search(self, query: str) -> list[SearchHit]:
        """Rank endpoints for `query` by name, path, summary and description.

        Args:
            query: Free text, e.g. `"phone"`, `"deflect calls to messenger"`, or
                `"POST /phone_call_redirects"`.

        Returns:
            Matching endpoints, best first (ties by name).

        Raises:
            EndpointNotFoundError: Nothing matches; the message lists every endpoint.
        """
        if not query or not query.strip():
            raise EndpointNotFoundError(f"The search query is empty. {self.listing()}")
        hits = [self._score(endpoint, query) for endpoint in self]
        ranked = sorted(
            (hit for hit in hits if hit.score > 0), key=lambda hit: (-hit.score, hit.endpoint.name)
        )
        if not ranked:
            raise EndpointNotFoundError(f"No endpoint matches {query!r}. {self.listing()}")
        return ranked

    def find(self, query: str) -> Endpoint:
        """The one endpoint `query` means: the best search hit, if it is the only best.

        Args:
            query: A name, path, `METHOD /path` or free text.

        Returns:
            The endpoint.

        Raises:
            EndpointNotFoundError: Nothing matches; the message lists every endpoint.
            AmbiguousQueryError: Several endpoints match equally well; the message lists them.
        """
        hits = self.search(query)
        best = [hit for hit in hits if abs(hit.score - hits[0].score) < 1e-9]
        if len(best) > 1:
            names = ", ".join(f"{hit.endpoint.name} ({hit.endpoint.title})" for hit in best)
            raise AmbiguousQueryError(
                f"{query!r} matches {len(best)} endpoints equally well: {names}. "
                "Be more specific, e.g. give the endpoint's 'METHOD /path'.",
                best,
            )
        return hits[0].endpoint

    def listing(self) -> str:
        """One sentence listing every endpoint (name, title, summary), for error messages."""
        if not self._endpoints:
            return "The catalogue is empty."
        entries = "; ".join(f"{e.name} ({e.title}: {e.summary})" for e in self)
        return f"Available endpoints: {entries}"

    def _score(self, endpoint: Endpoint, query: str) -> SearchHit:
        normalized = " ".join(query.lower().split())
        path = endpoint.path.lower()
        exact = {endpoint.name.lower(), path, path.lstrip("/"), endpoint.title.lower()}
        if normalized in exact:
            return SearchHit(endpoint, EXACT_MATCH_SCORE, tuple(_words(query)))
        method_and_path = _METHOD_AND_PATH.match(query)
        if (
            method_and_path
            and method_and_path["method"].lower() in HTTP_METHODS
            and method_and_path["method"].upper() != endpoint.method
        ):
            return SearchHit(endpoint, 0.0)
        words = [word for word in _words(query) if word not in HTTP_METHODS]
        bonus = _METHOD_BONUS if endpoint.method.lower() in _words(query) else 0.0
        if not words:
            return SearchHit(endpoint, bonus if bonus and method_and_path is None else 0.0)
        total, matched = 0.0, []
        for word in words:
            word_score = sum(weight * _match(word, stems) for weight, stems in self._index[endpoint.name])
            if word_score > 0:
                total += word_score
                matched.append(word)
        if not matched:
            return SearchHit(endpoint, 0.0)
        return SearchHit(endpoint, total / len(words) + bonus, tuple(matched))


def load_catalog(folder: Traversable | PathLike[str] | str | None = None) -> Catalog:
    """Load every endpoint record from `folder` (default: the packaged schemas).

    Args:
        folder: A directory holding `*.endpoint.json` files and the schemas they name, as
            written by `prefect_intercom.schemagen.write_outputs`.

    Returns:
        The catalogue.

    Raises:
        EndpointNotFoundError: A record or a schema it names is missing or malformed.

    Example:
        ```python
        from pathlib import Path
        from prefect_intercom.schemagen import generate_from_files, write_outputs

        write_outputs(generate_from_files([Path("schemas")]), Path("/tmp/catalogue"))
        catalog = load_catalog("/tmp/catalogue")
        ```
    """
    if folder is None:
        root: Traversable = resources.files(SCHEMA_PACKAGE)
    elif isinstance(folder, (str, PathLike)):
        root = Path(folder)
    else:
        root = folder
    endpoints = []
    for entry in sorted(root.iterdir(), key=lambda item: item.name):
        if entry.name.endswith(ENDPOINT_SUFFIX):
            endpoints.append(_load_endpoint(root, entry))
    return Catalog(endpoints)


@cache
def default_catalog() -> Catalog:
    """The packaged catalogue, loaded once per process."""
    return load_catalog()


def get_endpoint(name: str) -> Endpoint:
    """The packaged endpoint called `name`."""
    return default_catalog().get(name)


def search(query: str) -> list[SearchHit]:
    """Search the packaged catalogue; see `Catalog.search`.

    Example:
        ```python
        from prefect_intercom.catalog import search
        best = search("deflect calls to messenger")[0].endpoint
        assert best.path == "/phone_call_redirects"
        ```
    """
    return default_catalog().search(query)


def find(query: str) -> Endpoint:
    """The one packaged endpoint `query` means; see `Catalog.find`."""
    return default_catalog().find(query)


def _load_endpoint(root: Traversable, entry: Traversable) -> Endpoint:
    try:
        record = _read_json(entry)
        return Endpoint(
            name=record["name"],
            method=record["method"],
            path=record["path"],
            summary=record["summary"],
            description=record["description"],
            request_schema=_read_json(root / record["request_schema"]),
            headers_schema=_read_json(root / record["headers_schema"]),
            headers=record["headers"],
            body_fields=record["body_fields"],
            steps=record["steps"],
        )
    except (KeyError, TypeError, ValueError, OSError) as error:
        raise EndpointNotFoundError(
            f"Catalogue record {entry.name} is incomplete or unreadable ({type(error).__name__}: {error}); "
            "regenerate it with `python -m prefect_intercom.schemagen`."
        ) from None


def _read_json(entry: Traversable) -> dict[str, Any]:
    return json.loads(entry.read_text(encoding="utf-8"))


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


def _index(endpoint: Endpoint) -> list[tuple[float, frozenset[str]]]:
    """The weighted word stems of an endpoint's searchable fields."""
    name_and_path = f"{endpoint.name} {endpoint.path}".replace("_", " ").replace("/", " ").replace("-", " ")
    field_names = " ".join(row["name"] for row in endpoint.body_fields).replace("_", " ").replace(".", " ")
    summary = _stems(endpoint.summary)
    return [
        (_NAME_WEIGHT, _stems(name_and_path)),
        (_SUMMARY_WEIGHT, summary),
        (_DESCRIPTION_WEIGHT, _stems(endpoint.description) - summary),
        (_FIELD_WEIGHT, _stems(field_names)),
    ]


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


def _markdown_table(rows: list[dict[str, Any]], *, with_values: bool) -> list[str]:
    header = "| Name | Type | Required | Description |"
    lines = [header, "|---|---|---|---|"]
    for row in rows:
        description = row["description"].replace("\n\n", " ").replace("|", "\\|")
        if with_values and row.get("enum"):
            values = sorted(row["enum"], key=_natural_key)
            description += " Possible values: " + ", ".join(f"`{value}`" for value in values) + "."
        if row.get("default") is not None:
            description += f" Default: `{row['default']}`."
        required = "Yes" if row["required"] else "No"
        lines.append(f"| `{row['name']}` | {row['type']} | {required} | {description.strip()} |")
    return lines


def _natural_key(value: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key putting `1.2` before `1.10` and words after numbers (`2.12` before `Unstable`)."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"[.\-_ ]", value))
