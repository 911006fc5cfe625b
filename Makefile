# Quick start (README): `make recipe` trains and evaluates the main model; `make test` runs the tests.
#
# Both run in a virtual environment of this project (.venv), never in whatever Python packages the
# machine happens to have: it is created if missing, torch's CPU build is installed first, then this
# package with every other dependency upgraded to the newest release its pins allow (for transformers:
# the newest release of the tested range declared in hf_vanilla_transformer/compat.py). torch is held at
# TORCH_SPEC in that upgrade too: a newer torch from PyPI is a multi-GB CUDA build.
#
# Compatibility (CI runs all three, see .ci/run):
#   make test          the whole suite on the newest transformers within the tested range
#   make test-floor    the model, generation and remote-code tests on the range's floor release
#   make canary        the same on the newest transformers release overall, if it is above the range
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
VENV ?= .venv
BIN = $(VENV)/bin
PIP = $(BIN)/python -m pip --quiet --disable-pip-version-check

# The tested transformers range, read from its one home.
TESTED_RANGE := $(shell sed -n 's/^TESTED_TRANSFORMERS = SpecifierSet("\(.*\)")/\1/p' hf_vanilla_transformer/compat.py)
FLOOR := $(shell echo '$(TESTED_RANGE)' | sed -n 's/.*>=\([0-9.]*\).*/\1/p')
# Tests of the model itself, generation and remote-code loading: what must hold on every release.
CORE_TESTS = tests/test_compat.py tests/test_config.py tests/test_modeling.py tests/test_generation.py \
	tests/test_layers_reference.py tests/test_marian_reference.py tests/test_positional_encoding.py \
	tests/test_hf_common.py tests/test_remote_code.py tests/test_toy_task.py tests/test_tokenizer.py \
	tests/test_decoding_fast_path.py tests/test_attention_score.py tests/test_rnn_seq2seq.py tests/test_rnn_hf_common.py
# The suite runs in parallel, one pytest-xdist worker per core, a test file to a worker (module fixtures run once);
# each worker's torch takes its share of the cores (tests/conftest.py); the 10 slowest tests are listed, to keep CI
# time in view. `pytest tests/test_x.py` alone runs serially.
PYTEST = -m pytest -n auto --dist loadfile --durations=10

.PHONY: install recipe recipe-full recipe-full-en-de recipe-full-en-de-lc-tok recipe-tatoeba compare ablations tables cards test test-floor canary venv-floor venv-canary versions lint benchmark figures

install:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(PIP) install "$(TORCH_SPEC)"
	@$(PIP) install --upgrade --upgrade-strategy eager -e ".[dev]" "$(TORCH_SPEC)"  # torch stays the CPU build
	@$(BIN)/python -c "import torch, transformers; print(f'{\"$(VENV)\"}: torch {torch.__version__}, transformers {transformers.__version__} (tested range {\"$(TESTED_RANGE)\"})')"

# A run writes only into its folder under runs/ (its model card: runs/<name>/model/README.md).
# The quick start's main command ends within 15 minutes, counting the creation of .venv: HVT_RUN_STARTED is taken
# when make starts, and training stops early where the machine would need longer (train/config.py max_total_minutes).
recipe: export HVT_RUN_STARTED := $(shell date +%s)
recipe: install
	$(BIN)/python -m train.recipe max_total_minutes=15

# The long settings, at most 2 hours each: Multi30k De->En and En->De (README "Longer runs").
recipe-full: install
	$(BIN)/python -m train.recipe --setting full

recipe-full-en-de: install
	$(BIN)/python -m train.recipe --setting full-en-de

# En->De on Multi30k's lowercased, tokenised text, as published Multi30k systems train (README "Longer runs").
recipe-full-en-de-lc-tok: install
	$(BIN)/python -m train.recipe --setting full-en-de-lc-tok

# Tatoeba cmn-eng, Chinese -> English and English -> Chinese (the quick recipe's settings; ~13 minutes each).
recipe-tatoeba: install
	$(BIN)/python -m train.recipe --setting tatoeba-zh-en
	$(BIN)/python -m train.recipe --setting tatoeba-en-zh

# Explicitly refresh the committed cards in model_cards/ from the finished runs of the recipes (Multi30k
# quick and full, Tatoeba both directions: whichever have finished).
cards: install
	$(BIN)/python -m train.recipe --refresh-cards

# The quick recipe, then plain Hugging Face (MarianMTModel + Seq2SeqTrainer) for the same training minutes on
# this machine (~30 minutes): results/recipe-vs-baseline.json.
compare: install
	$(BIN)/python -m train.compare_baseline

# Table 3-style ablations of the quick recipe, ~13 minutes a trained row (SEEDS=1,2,3 for a spread; ROWS=a,b):
# results/ablations/<row>-seed<k>.json, the table, and docs/figures/ablations-val-bleu.png.
SEEDS ?= 1
ROWS ?=
ablations: install
	$(BIN)/python -m train.ablations --seeds $(SEEDS) $(if $(ROWS),--rows $(ROWS))
	$(BIN)/python -m train.ablations --plot recipe,heads-1,no-label-smoothing,unscaled-scores

# Rebuild the README's generated tables from the committed results files (`--check`: is it up to date?).
tables: install
	$(BIN)/python -m train.results_tables

test: install
	$(BIN)/python $(PYTEST)

venv-floor:
	@$(MAKE) --no-print-directory install VENV=.venv-floor
	@.venv-floor/bin/python -m pip --quiet --disable-pip-version-check install "transformers==$(FLOOR)"
	@.venv-floor/bin/python -c "import transformers; print(f'.venv-floor: pinned to the floor, transformers {transformers.__version__}')"

# A floor venv that already holds the floor release is reused (CI has just built it); any other is rebuilt.
test-floor:
	@.venv-floor/bin/python -c "import sys, transformers; from packaging.version import Version as V; sys.exit(V(transformers.__version__) != V('$(FLOOR)'))" 2>/dev/null \
		|| $(MAKE) --no-print-directory venv-floor
	.venv-floor/bin/python $(PYTEST) $(CORE_TESTS)

# The newest transformers release overall: above the tested range it is installed anyway (pip warns about
# the pin), and the core tests tell whether the cap can be raised. `pip install --upgrade` quietly settles for
# an older release when one of the newest release's requirements cannot be installed (transformers 5.25 needed
# `kernels>=0.19.1` for two days before this project's package index had it), and the canary would then test
# nothing. So the newest release is read from the index (`pip index versions`), and if pip did not install it, it
# is installed without its requirements; `make canary` says which are missing (`pip check`). From 5.25 on,
# `from_pretrained` calls the `kernels` library unless USE_HUB_KERNELS=NO; this model has no Hub-kernel layers
# on a CPU, so without `kernels` the canary turns that off and tests everything else.
CANARY_PIP = .venv-canary/bin/python -m pip --quiet --disable-pip-version-check
# Shell substitutions: the newest transformers release on the index, and the one the canary venv holds.
CANARY_NEWEST = $$(.venv-canary/bin/python -m pip --disable-pip-version-check index versions transformers 2>/dev/null | sed -n 's/^transformers (\(.*\))$$/\1/p')
CANARY_INSTALLED = $$(.venv-canary/bin/python -c "import transformers; print(transformers.__version__)" 2>/dev/null)
venv-canary:
	@$(MAKE) --no-print-directory install VENV=.venv-canary
	@$(CANARY_PIP) install --upgrade transformers
	@newest=$(CANARY_NEWEST); \
	installed=$(CANARY_INSTALLED); \
	if [ -z "$$newest" ]; then echo "canary: could not read the newest transformers release from the index"; exit 1; fi; \
	if [ "$$newest" != "$$installed" ]; then \
		echo "canary: pip installed transformers $$installed, but $$newest is the newest release: installing it without its requirements"; \
		$(CANARY_PIP) install --no-deps "transformers==$$newest"; \
	fi

# A canary venv that already holds the newest release on the index is reused (CI has just built it).
canary:
	@newest=$(CANARY_NEWEST); \
	installed=$(CANARY_INSTALLED); \
	if [ -z "$$newest" ] || [ "$$newest" != "$$installed" ]; then $(MAKE) --no-print-directory venv-canary; fi
	@if .venv-canary/bin/python -c "import sys, transformers; from packaging.specifiers import SpecifierSet; sys.exit(transformers.__version__ in SpecifierSet('$(TESTED_RANGE)'))"; then \
		.venv-canary/bin/python -m pip --disable-pip-version-check check | sed 's/^/canary: pip check: /' || true; \
		if ! .venv-canary/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('kernels') is None)"; then \
			echo "canary: the \`kernels\` package is not installed: testing with USE_HUB_KERNELS=NO"; export USE_HUB_KERNELS=NO; fi; \
		.venv-canary/bin/python $(PYTEST) $(CORE_TESTS) --deselect tests/test_compat.py::test_the_installed_release_is_a_tested_one --deselect tests/test_compat.py::test_a_tested_release_is_silent; \
	else echo "canary: the newest transformers release is within the tested range ($(TESTED_RANGE)); nothing to do"; fi

versions:
	@for venv in .venv .venv-floor .venv-canary; do test -x $$venv/bin/python && \
		$$venv/bin/python -c "import sys, torch, transformers, tokenizers, huggingface_hub; print(f'{sys.argv[1]:13s} transformers {transformers.__version__:8s} torch {torch.__version__:12s} tokenizers {tokenizers.__version__:8s} huggingface_hub {huggingface_hub.__version__}')" $$venv; done; true

lint:
	$(BIN)/python -m ruff check hf_vanilla_transformer train tests benchmarks explain

benchmark: install
	$(BIN)/python benchmarks/bench_model.py

# The README's pictures (docs/figures/), drawn from a trained model of the recipe (`make recipe`).
# Attention: two Multi30k validation sentences (val.de lines 158 and 706), each with a verb-final clause
# ("..., während er ... sitzt"); the second also has a compound (Holzbank -> wooden bench).
FIGURES_MODEL ?= runs/multi30k-de-en/model
FIGURES_DIR = docs/figures
ATTENTION_MAPS = $(BIN)/python -m explain.attention_maps --model $(FIGURES_MODEL) --out $(FIGURES_DIR)
figures: install
	$(ATTENTION_MAPS) --prefix attention-shaving --kinds encoder-self decoder-self --layers 1 \
		--source "Ein Mann rasiert sich, während er am Strand vor dem Meer sitzt."
	$(ATTENTION_MAPS) --prefix attention-shaving --kinds cross --layers 3 \
		--source "Ein Mann rasiert sich, während er am Strand vor dem Meer sitzt."
	$(ATTENTION_MAPS) --prefix attention-wooden-bench --kinds cross --layers 3 \
		--source "Das Mädchen und der Junge küssen sich, während sie auf einer Holzbank sitzen."
	$(BIN)/python -m explain.positional_encoding_plots --model $(FIGURES_MODEL) --out $(FIGURES_DIR)
	$(BIN)/python -m explain.score_variance --figure $(FIGURES_DIR)/score-variance.png  # no model: sampled q, k (§3.2.1)
