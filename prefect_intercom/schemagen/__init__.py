"""Generate JSON Schema (draft 2020-12) and catalogue records from documentation pages.

Build-time code only: `import prefect_intercom` never loads it. Run it as a module:

    python -m prefect_intercom.schemagen schemas/phone_call_redirects.txt -o schemas
    python -m prefect_intercom.schemagen schemas/ -o schemas --check   # fail on drift

Its inputs are each page `NAME.txt` and, next to it, Intercom's OpenAPI descriptions of the
same endpoint, `NAME.*.openapi.yaml` (copies of the upstream files; see
`prefect_intercom.schemagen.openapi_description`). For each page it writes three files into the output
directory:

- `NAME.request.schema.json`: the request body.
- `NAME.headers.schema.json`: the request headers.
- `NAME.endpoint.json`: the catalogue record (method, path, summary, reference, steps).

How the page's words become rules (the interpretation is stated here, once):

- Types map one to one (`String` -> `string`, `Array` -> `array`, ...); `Required: Yes`
  -> `required`; "Possible values" -> `enum`; "Default value" -> `default`.
- A string whose description says "E.164" must be an E.164 phone number: `+`, a non-zero
  digit, then 6 to 14 more digits; nothing else, not even a trailing newline.
- An object whose description speaks of "key-value pairs" is a map with arbitrary keys. Its
  values are plain attribute values (string, number, boolean) or one of the shapes its
  dotted child rows describe; a child row names a value shape, not a key.
- Every other object whose fields the page lists is closed: an unlisted key (a typo) is refused.
  An object the page lists no fields for is open. The body itself is always closed.
- Header values are strings that never contain CR or LF.
- A header's allowed values are those the page lists and those any OpenAPI description lists
  (Intercom releases API versions after the page: both "Unstable" and its new name "Preview"
  are accepted); version numbers are sorted, other values follow in the order first seen. The
  default is the page's.
- After the schema, `prefect_intercom.validation` checks that an E.164 number is possible in
  its country's numbering plan and written as E.164 writes it, with no national prefix after
  the country code (`prefect_intercom.numbering_plans`).
"""

from prefect_intercom.schemagen.generator import (
    endpoint_file,
    find_drift,
    generate,
    generate_from_files,
    headers_schema_file,
    main,
    render,
    request_schema_file,
    write_outputs,
)

__all__ = [
    "endpoint_file",
    "find_drift",
    "generate",
    "generate_from_files",
    "headers_schema_file",
    "main",
    "render",
    "request_schema_file",
    "write_outputs",
]
