"""The `dkos` command: a thin client of the REST API (docs/api.md); it never imports server code."""
