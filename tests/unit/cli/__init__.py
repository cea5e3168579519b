"""Unit tests of the `dkos` CLI (src/dkos/cli), run against a scripted API."""
