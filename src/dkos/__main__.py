"""`python -m dkos` is the `dkos` command."""

from dkos.cli.main import app

app(prog_name="dkos")
