"""The endpoint catalogue: one `Endpoint` per generated docs page, found by name or words.

Everything here is read from the files `schemagen` writes (`prefect_intercom.schemas`, or a
checkout's `schemas/`: docs/schema.md); adding an endpoint means adding its page and regenerating.
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

from prefect_intercom.errors import EndpointNotFoundError

SCHEMA_PACKAGE = "prefect_intercom.schemas"
ENDPOINT_SUFFIX = ".endpoint.json"
PHONE_CALL_REDIRECTS = "phone_call_redirects"
_WORD = re.compile(r"[a-z0-9]+")
# What an endpoint record holds as it is (the two schemas it names are read from their files).
_RECORD_FIELDS = ("name", "method", "path", "summary", "description", "headers", "body_fields", "steps")
_METHOD_FIRST = re.compile(r"^\s*(get|post|put|patch|delete|head|options)\s+/", re.IGNORECASE)


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


class Catalog:
    """A set of endpoints, found by name (`get`) or by what people type (`find`).

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
        self._exact = {e.name: {_normal(e.name), _normal(e.path), _normal(e.title)} for e in self}
        self._words = {e.name: set(_words(e)) for e in self}

    def __iter__(self) -> Iterator[Endpoint]:
        return iter(self._endpoints.values())

    def __contains__(self, name: object) -> bool:
        """Whether an endpoint is called `name`."""
        return name in self._endpoints

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

    def find(self, query: str) -> Endpoint:
        """The one endpoint `query` means.

        Case, spaces and punctuation never matter. An exact name, path or `METHOD /path` wins;
        otherwise every query word must begin a word of the endpoint's name, path, method,
        summary, description or body field names. A `METHOD /path` query never finds another
        method.

        Args:
            query: A name, path, `METHOD /path` or words, e.g. `"deflect calls to messenger"`.

        Returns:
            The endpoint.

        Raises:
            EndpointNotFoundError: Nothing matches (the message lists what exists and, for a
                typo, the word meant), or several endpoints do (the message names them).
        """
        wanted = _normal(query)
        if not wanted:
            raise EndpointNotFoundError(f"The search query is empty. {self.listing()}")
        method = _METHOD_FIRST.match(query)
        candidates = [e for e in self if method is None or method[1].upper() == e.method]
        words = wanted.split()
        found = [e for e in candidates if wanted in self._exact[e.name]] or [
            e for e in candidates if all(any(w.startswith(word) for w in self._words[e.name]) for word in words)
        ]
        if len(found) == 1:
            return found[0]
        if found:
            names = ", ".join(f"{e.name} ({e.title})" for e in found)
            raise EndpointNotFoundError(
                f"{query!r} matches {len(found)} endpoints: {names}. "
                "Be more specific, e.g. give the endpoint's 'METHOD /path'."
            )
        raise EndpointNotFoundError(f"No endpoint matches {query!r}.{self._did_you_mean(words)} {self.listing()}")

    def listing(self) -> str:
        """One sentence listing every endpoint (name, title, summary), for error messages."""
        if not self._endpoints:
            return "The catalogue is empty."
        return "Available endpoints: " + "; ".join(f"{e.name} ({e.title}: {e.summary})" for e in self)

    def _did_you_mean(self, words: list[str]) -> str:
        known = set().union(*self._words.values())
        fixes = [
            f"{close[0]!r} for {word!r}"
            for word in words
            if not any(w.startswith(word) for w in known) and (close := difflib.get_close_matches(word, known, 1, 0.8))
        ]
        return f" Did you mean {', '.join(fixes)}?" if fixes else ""


def _normal(text: str) -> str:
    """Lower case, punctuation and spaces one space: `POST /phone_call_redirects` is `post phone call redirects`."""
    return " ".join(_WORD.findall(text.lower()))


def _words(endpoint: Endpoint) -> list[str]:
    """The words of everything `find` looks at for an endpoint."""
    fields = " ".join(row["name"] for row in endpoint.body_fields)
    return _normal(f"{endpoint.title} {endpoint.name} {endpoint.summary} {endpoint.description} {fields}").split()


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
    root = Path(folder) if isinstance(folder, str | PathLike) else folder or schema_folder()
    records = sorted((entry for entry in root.iterdir() if entry.name.endswith(ENDPOINT_SUFFIX)), key=lambda e: e.name)
    return Catalog(_load_endpoint(root, entry) for entry in records)


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


def find(query: str) -> Endpoint:
    """The one packaged endpoint `query` means; see `Catalog.find`.

    Example:
        ```python
        from prefect_intercom.catalog import find
        assert find("deflect calls to messenger").path == "/phone_call_redirects"
        ```
    """
    return default_catalog().find(query)


def _load_endpoint(root: Traversable, entry: Traversable) -> Endpoint:
    try:
        record = _read_json(entry)
        return Endpoint(
            **{name: record[name] for name in _RECORD_FIELDS},
            request_schema=_read_json(root / record["request_schema"]),
            headers_schema=_read_json(root / record["headers_schema"]),
        )
    except (KeyError, TypeError, ValueError, OSError) as error:
        raise EndpointNotFoundError(
            f"Catalogue record {entry.name} is incomplete or unreadable ({type(error).__name__}: {error}); "
            "regenerate it with `python -m prefect_intercom.schemagen`."
        ) from None


def _read_json(entry: Traversable) -> dict[str, Any]:
    return json.loads(entry.read_text(encoding="utf-8"))


def _markdown_table(rows: list[dict[str, Any]], *, with_values: bool) -> list[str]:
    lines = ["| Name | Type | Required | Description |", "|---|---|---|---|"]
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
