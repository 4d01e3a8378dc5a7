"""The endpoint catalogue: one `Endpoint` per generated docs page, and a search over them.

Everything here is read from the files `schemagen` writes into the packaged
`prefect_intercom.schemas` folder; adding an endpoint means adding its docs page and
regenerating, nothing else. Installed, that folder is the package `prefect_intercom.schemas`
(`pyproject.toml` maps the checkout's top-level `schemas/` onto it); imported from a checkout
whose `prefect_intercom/` comes first on `sys.path` (e.g. `prefect deploy` run from the
repository, which puts the working directory first), there is no such package and the
checkout's own `schemas/` folder is read instead (`schema_folder`).

How `Catalog.search` ranks is stated once, in `prefect_intercom.catalog_search`; endpoints
scoring 0 are left out, and if none is left, `EndpointNotFoundError` lists what exists.
"""

from __future__ import annotations

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

from prefect_intercom.catalog_search import EXACT_MATCH_SCORE as EXACT_MATCH_SCORE  # re-exported
from prefect_intercom.catalog_search import EndpointIndex, index_endpoint, score
from prefect_intercom.errors import AmbiguousQueryError, EndpointNotFoundError

SCHEMA_PACKAGE = "prefect_intercom.schemas"
ENDPOINT_SUFFIX = ".endpoint.json"
PHONE_CALL_REDIRECTS = "phone_call_redirects"


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
        self._index: dict[str, EndpointIndex] = {
            name: index_endpoint(endpoint) for name, endpoint in self._endpoints.items()
        }

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
        ranked = sorted((hit for hit in hits if hit.score > 0), key=lambda hit: (-hit.score, hit.endpoint.name))
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
        value, matched = score(endpoint, self._index[endpoint.name], query)
        return SearchHit(endpoint, value, matched)


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
        root: Traversable = schema_folder()
    elif isinstance(folder, (str, PathLike)):
        root = Path(folder)
    else:
        root = folder
    endpoints = []
    for entry in sorted(root.iterdir(), key=lambda item: item.name):
        if entry.name.endswith(ENDPOINT_SUFFIX):
            endpoints.append(_load_endpoint(root, entry))
    return Catalog(endpoints)


def schema_folder() -> Traversable:
    """Where the packaged schemas are: `prefect_intercom.schemas`, or the checkout's `schemas/`.

    Returns:
        The installed package's folder when `prefect_intercom.schemas` is importable (a wheel or
        an editable install); otherwise, when `prefect_intercom` is imported straight from a
        repository checkout, the checkout's top-level `schemas/` folder.

    Raises:
        EndpointNotFoundError: Neither exists (a broken install); the message says how to fix it.
    """
    try:
        return resources.files(SCHEMA_PACKAGE)
    except ModuleNotFoundError:
        checkout = Path(__file__).resolve().parent.parent / "schemas"
        if (checkout / f"{PHONE_CALL_REDIRECTS}{ENDPOINT_SUFFIX}").is_file():
            return checkout
        raise EndpointNotFoundError(
            f"The endpoint schemas are missing: neither the package {SCHEMA_PACKAGE} nor {checkout} exists; "
            "reinstall prefect-intercom (`pip install prefect-intercom`, or `pip install -e .` in a checkout)."
        ) from None


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
