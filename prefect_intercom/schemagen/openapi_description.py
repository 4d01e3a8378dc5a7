"""Read the header values an OpenAPI description allows, the generator's second source.

Intercom publishes an OpenAPI description per API version (github.com/intercom/Intercom-OpenAPI).
A copy of the parts that describe an endpoint sits next to its documentation page, named
`NAME.VERSION.openapi.yaml` (e.g. `schemas/phone_call_redirects.preview.openapi.yaml`). The
generator (`prefect_intercom.schemagen`) reads from it the values each header may take, and
accepts every value either source lists: Intercom released API versions after the docs page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect_intercom.errors import DocsPageError

OPENAPI_SUFFIX = ".openapi.yaml"


def descriptions_for(page_path: Path) -> list[Path]:
    """The OpenAPI descriptions next to a documentation page (`NAME.*.openapi.yaml`), sorted by name."""
    return sorted(page_path.parent.glob(f"{page_path.stem}.*{OPENAPI_SUFFIX}"))


def header_values(path: Path, method: str, api_path: str) -> dict[str, list[str]]:
    """The allowed values of each header parameter of one operation, in the description's order.

    Args:
        path: An OpenAPI 3 description (YAML or JSON).
        method: The operation's HTTP method, e.g. `POST`.
        api_path: The operation's path, e.g. `/phone_call_redirects`.

    Returns:
        Header name -> its `enum` (headers without an enum are left out).

    Raises:
        DocsPageError: The file is not a description of that operation, or a `$ref` is broken.
    """
    import yaml  # a dependency of Prefect's; imported here, only the generator needs it

    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise DocsPageError(0, f"not valid YAML ({error.__class__.__name__})", path.name) from None
    operation = _get(spec, ["paths", api_path, method.lower()])
    if not isinstance(operation, dict):
        raise DocsPageError(0, f"describes no operation {method.upper()} {api_path}", path.name)
    values: dict[str, list[str]] = {}
    for parameter in operation.get("parameters", []):
        parameter = _resolve(spec, parameter, path)
        if not isinstance(parameter, dict) or parameter.get("in") != "header":
            continue
        schema = _resolve(spec, parameter.get("schema", {}), path)
        enum = schema.get("enum") if isinstance(schema, dict) else None
        if isinstance(enum, list):
            values[str(parameter["name"])] = [str(value) for value in enum]
    return values


def _resolve(spec: Any, node: Any, path: Path) -> Any:
    """`node`, following a local `$ref` (`#/components/...`) chain."""
    seen: set[str] = set()
    while isinstance(node, dict) and isinstance(node.get("$ref"), str):
        ref = node["$ref"]
        if not ref.startswith("#/") or ref in seen:
            raise DocsPageError(0, f"cannot follow $ref {ref!r}", path.name)
        seen.add(ref)
        node = _get(spec, [part.replace("~1", "/").replace("~0", "~") for part in ref[2:].split("/")])
        if node is None:
            raise DocsPageError(0, f"$ref {ref!r} points nowhere", path.name)
    return node


def _get(node: Any, keys: list[str]) -> Any:
    for key in keys:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node
