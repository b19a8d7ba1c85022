# The two commands: `make run` and `make test`. Both install what they need first.
# `make lint` (ruff check, ruff format --check, mypy as configured in pyproject.toml) runs in CI before the tests.
.PHONY: run test install lint bench

install:
	@bash scripts/install.sh

run: install
	@bash scripts/run.sh

test: install
	@bash scripts/test.sh $(ARGS)

lint: install
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy .

bench: install
	.venv/bin/python bench/run_all.py
