# Developer entry points. `make test` is what CI runs (.ci/run).
# Every target that needs the virtualenv or Docker goes through `setup`,
# which is idempotent and takes about a second when there is nothing to do.

VENV := .venv
PYTEST_ARGS ?=

.PHONY: setup run test check clean

setup:
	scripts/setup.sh

# Starts the server and deploys the demo app.
run: setup
	$(VENV)/bin/python -m dkos.demo

test: setup
	$(VENV)/bin/pytest -q -ra $(PYTEST_ARGS)

check:
	$(VENV)/bin/ruff format --check src tests bench && $(VENV)/bin/ruff check src tests bench && $(VENV)/bin/mypy

# Keeps .dkos (local data) and the Docker images.
clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
	rm -f images/*/busybox
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
