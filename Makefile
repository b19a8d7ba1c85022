# The two commands: `make run` and `make test`. Both install what they need first.
.PHONY: run test install lint bench

install:
	@bash scripts/install.sh

run: install
	@bash scripts/run.sh

test: install
	@bash scripts/test.sh $(ARGS)

lint: install
	.venv/bin/ruff check .

bench: install
	.venv/bin/python bench/run_all.py
