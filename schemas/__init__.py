"""Docs pages and the JSON Schemas generated from them, shipped as `prefect_intercom.schemas`.

Regenerate with `python -m prefect_intercom.schemagen schemas/ -o schemas`; never edit the
`*.json` files by hand (a test fails on any drift).
"""
