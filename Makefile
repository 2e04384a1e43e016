# The two set-up commands of the README. Each sets up .venv as needed, then runs.
#   make serve ARGS="--port 8121 --config models.toml"   (ALIZE_* variables work too)
#   make test ARGS="-k structured -x"
.PHONY: serve test setup setup-test check
ARGS ?=

serve: setup
	.venv/bin/alize serve $(ARGS)

test: setup-test
	@scripts/services.sh
	.venv/bin/python -m pytest -q $(ARGS)

setup:
	@scripts/setup.sh

setup-test:
	@scripts/setup.sh test

check: setup-test
	.venv/bin/ruff check alize tests
	.venv/bin/lint-imports
	.venv/bin/mypy
