# Quick start (README): `make recipe` trains and evaluates the main model; `make test` runs the tests.
# Both install what they need first: torch's CPU build, then this package with its extras.
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0

.PHONY: install recipe recipe-full cards test lint benchmark

install:
	$(PYTHON) -m pip install --quiet "$(TORCH_SPEC)"
	$(PYTHON) -m pip install --quiet -e ".[dev]"

# A run writes only into its folder under runs/ (its model card: runs/<name>/model/README.md).
recipe: install
	$(PYTHON) -m train.recipe

recipe-full: install
	$(PYTHON) -m train.recipe --setting full

# Explicitly refresh the committed cards in model_cards/ from the finished runs of the recipes.
cards:
	$(PYTHON) -m train.recipe --refresh-cards

test: install
	$(PYTHON) -m pytest

lint:
	$(PYTHON) -m ruff check hf_vanilla_transformer train tests benchmarks

benchmark: install
	$(PYTHON) benchmarks/bench_model.py
