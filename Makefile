# The two set-up commands of the README. Each sets up .venv as needed, then runs.
.PHONY: serve test setup setup-test check

serve: setup
	.venv/bin/alize serve

test: setup-test
	.venv/bin/python -m pytest -q

setup:
	@scripts/setup.sh

setup-test:
	@scripts/setup.sh test

check: setup-test
	.venv/bin/ruff check alize tests
	.venv/bin/lint-imports
