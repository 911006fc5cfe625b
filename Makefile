# Quick start (README): `make recipe` trains and evaluates the main model; `make test` runs the tests.
# Both install what they need first: torch's CPU build, then this package with its extras.
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0

.PHONY: install recipe recipe-full test lint benchmark

install:
	$(PYTHON) -m pip install --quiet "$(TORCH_SPEC)"
	$(PYTHON) -m pip install --quiet -e ".[dev]"

recipe: install
	$(PYTHON) -m train.recipe --card model_cards/multi30k-de-en.md

recipe-full: install
	$(PYTHON) -m train.recipe --setting full --card model_cards/multi30k-de-en-full.md

test: install
	$(PYTHON) -m pytest

lint:
	$(PYTHON) -m ruff check hf_vanilla_transformer train tests benchmarks

benchmark: install
	$(PYTHON) benchmarks/bench_model.py
