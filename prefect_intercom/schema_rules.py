"""The marks the generated schemas carry that runtime code reads back.

`prefect_intercom.schemagen` (build time) writes them into the JSON Schema files, and
`prefect_intercom.validation` (run time) recognises them there; both import them from here,
so that validating a request never loads the generator or the documentation-page parser.
"""

import re

# `(?![\s\S])` ends the match at the very end of the string in both Python and ECMA-262
# regular expressions; `$` would also match before a final newline in Python.
E164_PATTERN = r"^\+[1-9][0-9]{6,14}(?![\s\S])"
"""An E.164 phone number: `+`, a non-zero digit, then 6 to 14 more digits, and nothing else."""
E164 = re.compile(E164_PATTERN)
"""`E164_PATTERN` compiled, for the runtime checks (validation, hints, the sandbox)."""
E164_FORMAT = "e164"
"""The value of `FORMAT_ANNOTATION` on a string that must be an E.164 phone number."""
FORMAT_ANNOTATION = "x-intercom-format"
"""The schema keyword naming a string's format (JSON Schema's own `format` is not asserted)."""
