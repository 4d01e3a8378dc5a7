"""The endpoint catalogue: one `Endpoint` per generated docs page, and a search over them.

Everything here is read from the files `schemagen` writes into the packaged
`prefect_intercom.schemas` folder; adding an endpoint means adding its docs page and
regenerating, nothing else.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from importlib.abc import Traversable
from typing import Any

from prefect_intercom.errors import IntercomError

SCHEMA_PACKAGE = "prefect_intercom.schemas"
ENDPOINT_SUFFIX = ".endpoint.json"
PHONE_CALL_REDIRECTS = "phone_call_redirects"

_WORD = re.compile(r"[a-z0-9]+")
_STOP_WORDS = frozenset({"a", "an", "the", "to", "of", "for", "and", "or", "in", "on", "api", "with"})


class EndpointNotFoundError(IntercomError, LookupError):
    """No catalogue entry matches a name or query; the message lists what exists."""


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
    """A catalogue entry and how well it matched a query (higher is better)."""

    endpoint: Endpoint
    score: float


class Catalog:
    """A set of endpoints with lookup by name and ranked search."""

    def __init__(self, endpoints: Iterable[Endpoint]) -> None:
        self._endpoints = {endpoint.name: endpoint for endpoint in endpoints}

    def __iter__(self):
        return iter(self._endpoints.values())

    def __len__(self) -> int:
        return len(self._endpoints)

    @property
    def names(self) -> list[str]:
        """Every endpoint name, sorted."""
        return sorted(self._endpoints)

    def get(self, name: str) -> Endpoint:
        """The endpoint called `name`; raises `EndpointNotFoundError` listing what exists."""
        try:
            return self._endpoints[name]
        except KeyError:
            raise EndpointNotFoundError(f"No endpoint named {name!r}. {self._listing()}") from None

    def search(self, query: str) -> list[SearchHit]:
        """Rank endpoints for `query` by name, path, summary and description.

        Args:
            query: Free text, e.g. `"phone"`, `"deflect calls to messenger"`, or
                `"POST /phone_call_redirects"`.

        Returns:
            Matching endpoints, best first.

        Raises:
            EndpointNotFoundError: Nothing matches; the message lists every endpoint.
        """
        query_words = _words(query)
        hits = [SearchHit(endpoint, _score(endpoint, query, query_words)) for endpoint in self]
        ranked = sorted((hit for hit in hits if hit.score > 0), key=lambda hit: (-hit.score, hit.endpoint.name))
        if not ranked:
            raise EndpointNotFoundError(f"No endpoint matches {query!r}. {self._listing()}")
        return ranked

    def _listing(self) -> str:
        if not self._endpoints:
            return "The catalogue is empty."
        entries = "; ".join(f"{e.name} ({e.title}: {e.summary})" for e in self)
        return f"Available endpoints: {entries}"


def load_catalog(folder: Traversable | None = None) -> Catalog:
    """Load every endpoint record from `folder` (default: the packaged schemas).

    Args:
        folder: A directory holding `*.endpoint.json` files and the schemas they name.

    Returns:
        The catalogue.
    """
    folder = folder if folder is not None else resources.files(SCHEMA_PACKAGE)
    endpoints = []
    for entry in sorted(folder.iterdir(), key=lambda item: item.name):
        if entry.name.endswith(ENDPOINT_SUFFIX):
            record = _read_json(entry)
            endpoints.append(
                Endpoint(
                    name=record["name"],
                    method=record["method"],
                    path=record["path"],
                    summary=record["summary"],
                    description=record["description"],
                    request_schema=_read_json(folder / record["request_schema"]),
                    headers_schema=_read_json(folder / record["headers_schema"]),
                    headers=record["headers"],
                    body_fields=record["body_fields"],
                    steps=record["steps"],
                )
            )
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


def _read_json(entry: Traversable) -> dict[str, Any]:
    return json.loads(entry.read_text(encoding="utf-8"))


def _words(text: str) -> list[str]:
    return [word for word in _WORD.findall(text.lower()) if word not in _STOP_WORDS]


def _stem(word: str) -> str:
    for suffix in ("ions", "ion", "ing", "es", "s", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def _score(endpoint: Endpoint, query: str, query_words: list[str]) -> float:
    normalized = query.strip().lower()
    if normalized in (endpoint.name, endpoint.path.lower(), endpoint.title.lower()):
        return 100.0
    if not query_words:
        return 0.0
    fields = (
        (4.0, endpoint.name.replace("_", " ") + " " + endpoint.path.replace("/", " ").replace("_", " ")),
        (2.0, endpoint.summary),
        (1.0, endpoint.description),
    )
    score = 0.0
    for word in query_words:
        stem = _stem(word)
        for weight, text in fields:
            if stem in {_stem(candidate) for candidate in _words(text)}:
                score += weight
    if endpoint.method.lower() in normalized.split():
        score += 0.5
    return score / len(query_words)


def _markdown_table(rows: list[dict[str, Any]], *, with_values: bool) -> list[str]:
    header = "| Name | Type | Required | Description |"
    lines = [header, "|---|---|---|---|"]
    for row in rows:
        description = row["description"].replace("\n\n", " ").replace("|", "\\|")
        if with_values and row.get("enum"):
            description += " Possible values: " + ", ".join(f"`{value}`" for value in row["enum"]) + "."
        if row.get("default") is not None:
            description += f" Default: `{row['default']}`."
        required = "Yes" if row["required"] else "No"
        lines.append(f"| `{row['name']}` | {row['type']} | {required} | {description.strip()} |")
    return lines
