"""train/results_tables.py: the README's generated tables are rebuilt from the results files, `--check`
fails on a stale one, and nothing outside the markers changes. The real README is checked too."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT
from train import results_tables
from train.results_tables import StaleTableError, begin_marker, end_marker, rewrite, stale_tables

BLEU_SIG = "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"
CHRF_SIG = "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0"
MACHINE = {"cpu": "Test CPU", "cpu_flags": ["avx2"], "torch_threads": 2, "torch": "2.13.0", "transformers": "5.24.0"}


def test_the_committed_readme_tables_are_up_to_date():
    assert results_tables.main(["--check"]) == 0


@pytest.fixture
def root(tmp_path) -> Path:
    """A repository with one model card's results and a comparison (numbers made up for the test)."""
    (tmp_path / "model_cards").mkdir()
    summary = {
        "steps": 2627,
        "epochs": 5.2964,
        "minutes_until_trained": 12.178,
        "total_minutes": 12.47,
        "precision": "bf16",
        "seed": 1,
        "machine": MACHINE,
        "test": {"dataset": "multi30k", "split": "test", "language_pair": "de-en", "bleu": 36.52, "chrf": 55.71},
    }
    (tmp_path / "model_cards" / "multi30k-de-en.results.json").write_text(json.dumps(summary))
    (tmp_path / "model_cards" / "multi30k-de-en.md").write_text("card")
    (tmp_path / "results").mkdir()
    entry = {"bleu_signature": BLEU_SIG, "chrf_signature": CHRF_SIG, "epochs": None}
    comparison = {
        "dataset": "multi30k",
        "language_pair": "de-en",
        "test_split": "test",
        "seed": 1,
        "machine": MACHINE,
        "same_machine": True,
        "recipe": {**entry, "command": "python -m train.recipe", "training_minutes": 12.04, "steps": 2600,
                   "bleu": 36.44, "chrf": 55.6, "precision": "bf16", "decoding": "beam 4"},
        "baseline": {**entry, "command": "python -m train.baseline", "training_minutes": 12.1, "steps": 1276,
                     "bleu": 32.68, "chrf": 51.3, "precision": "fp32", "decoding": "beam 4"},
        "bleu_difference": 36.44 - 32.68,
        "chrf_difference": 55.6 - 51.3,
    }  # fmt: skip
    (tmp_path / "results" / "recipe-vs-baseline.json").write_text(json.dumps(comparison))
    return tmp_path


README = f"""# Title

Intro text that must stay as it is.

{begin_marker("trained-models")}
| an old table |
{end_marker("trained-models")}

Between the tables.

{begin_marker("recipe-vs-baseline")}
{end_marker("recipe-vs-baseline")}
Tail.
"""


def test_rewrite_fills_the_tables_from_the_files_and_keeps_the_rest(root):
    text = rewrite(README, root)
    assert text.startswith("# Title\n\nIntro text that must stay as it is.\n\n<!-- table:trained-models -->\n| model")
    assert "\n<!-- /table:trained-models -->\n\nBetween the tables.\n\n<!-- table:recipe-vs-baseline -->\n|" in text
    assert text.endswith("<!-- /table:recipe-vs-baseline -->\nTail.\n")
    model_row = next(line for line in text.splitlines() if line.startswith("| [multi30k-de-en]"))
    assert (
        "| test_2016_flickr | 36.5 | – | 55.7 | 12.2 min: 2,627 steps, 5.3 epochs | 12.5 min | "
        "bf16, Test CPU" in model_row
    )
    assert "(model_cards/multi30k-de-en.md)" in model_row and "`model_cards/multi30k-de-en.results.json`" in model_row
    assert "| recipe | `python -m train.recipe` | 12.0 min: 2,600 steps | 36.4 | 55.6 | bf16 | beam 4 |" in text
    assert "| **difference** | | | **+3.8** | +4.3 | | |" in text
    assert BLEU_SIG in text and "NOT measured on the same machine" not in text
    assert rewrite(text, root) == text and stale_tables(text, root) == []


def test_a_model_of_lowercased_tokenised_text_has_only_the_lc_tok_score(root):
    """Its output is lowercased, tokenised text: no cased BLEU or chrF exists to put beside the others'."""
    test = {"dataset": "multi30k-lc-tok", "split": "test", "language_pair": "en-de", "bleu": 40.3, "chrf": 66.0,
            "bleu_tok_lc": 40.9}  # fmt: skip
    summary = {"steps": 6000, "minutes_until_trained": 105.2, "total_minutes": 117.0, "test": test}
    (root / "model_cards" / "multi30k-lc-tok-en-de-full.results.json").write_text(json.dumps(summary))
    row = next(line for line in rewrite(README, root).splitlines() if "multi30k-lc-tok, en-de" in line)
    assert "| test_2016_flickr | – | 40.9 | – | 105.2 min: 6,000 steps |" in row


def test_check_fails_on_a_stale_table_and_passes_after_the_rewrite(root, tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(rewrite(README, root))
    assert results_tables.main(["--check", "--readme", str(readme), "--root", str(root)]) == 0
    path = root / "results" / "recipe-vs-baseline.json"
    comparison = json.loads(path.read_text())
    path.write_text(json.dumps({**comparison, "bleu_difference": 5.2}))
    assert results_tables.main(["--check", "--readme", str(readme), "--root", str(root)]) == 1
    assert "stale table(s) ['recipe-vs-baseline']" in capsys.readouterr().err
    assert results_tables.main(["--readme", str(readme), "--root", str(root)]) == 0
    assert "**+5.2**" in readme.read_text()
    assert results_tables.main(["--check", "--readme", str(readme), "--root", str(root)]) == 0


def test_missing_results_say_which_command_makes_them(tmp_path):
    text = rewrite(README, tmp_path)
    assert "No trained models yet: run the recipe, then `make cards`." in text
    assert "Not measured yet: run `make compare`" in text
    avx2 = rewrite(f"{begin_marker('recipe-vs-baseline-avx2')}\n{end_marker('recipe-vs-baseline-avx2')}\n", tmp_path)
    assert "run `python -m train.compare_baseline --output results/recipe-vs-baseline-avx2.json`" in avx2
    speed = rewrite(f"{begin_marker('speed')}\n{end_marker('speed')}\n", tmp_path)
    assert f"Not measured yet: `python benchmarks/bench_model.py --json {results_tables.SPEED_RESULTS}`" in speed


def test_the_speed_table_shows_each_presets_ratios_from_one_benchmark_run(tmp_path):
    """Ratios are Marian's time over ours, as `bench_model.py` records them; a preset or a variant the run did not
    measure (bf16 weights on a CPU without native bf16) is left out or shown as a dash (numbers made up)."""

    def step(variant: str, ratio: float, mfu: float) -> dict:
        return {"measurement": "training step, small", "variant": variant, "ratio_vs_marian_fp32": ratio, "mfu": mfu}

    rows = [
        step("marian fp32", 1.0, 0.70),
        step("ours fp32", 1.494, 0.668),
        step("ours fp32, padding computed", 1.018, 0.71),
        step("ours bf16 autocast", 2.534, 0.414),
        *(
            {"measurement": "peak memory of a training step, small", "variant": variant, "peak_rss_growth_mib": mib}
            for variant, mib in [("marian fp32", 1684.0), ("ours fp32", 1598.5), ("ours bf16", 1054.6)]
        ),
        {"measurement": "greedy decoding, small, 64 x 25 tokens", "variant": "ours", "ratio_vs_marian": 1.571},
        {"measurement": "beam-4 decoding, small, 64 x 25 tokens", "variant": "ours", "ratio_vs_marian": 2.226},
        {
            "measurement": "beam-4 decoding, small, 64 x 25 tokens",
            "variant": "ours, bf16 weights",
            "ratio_vs_marian": 3.08,
        },
    ]
    record = {
        "machine": {"cpu": "AMD EPYC", "flags": ["avx2", "avx512f"], "threads": 2, "torch": "2.13.0+cpu",
                    "transformers": "5.24.0", "decoding_clock": "wall time"},
        "command": "benchmarks/bench_model.py --presets small --json x.json",
        "rows": rows,
    }  # fmt: skip
    path = tmp_path / results_tables.SPEED_RESULTS
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(record))
    table = rewrite(f"{begin_marker('speed')}\n{end_marker('speed')}\n", tmp_path)
    assert "| measurement | small (d 256, 3+3) |\n|---|---|\n" in table and "base" not in table
    assert "| training step, ours fp32 / Marian fp32 | 1.49x |" in table
    assert "Marian fp32 | **2.53x** |" in table and "| 0.67 / 0.41 |" in table
    assert "| 1,598 / 1,055 / 1,684 |" in table
    assert "| greedy decoding, ours / Marian | 1.57x |" in table
    assert "| beam-4 decoding, ours / Marian | 2.23x |" in table
    assert "Marian fp32 | – / 3.08x |" in table
    assert "AMD EPYC (avx2, avx512f), 2 threads, torch 2.13.0+cpu" in table and "`benchmarks/bench_model.py" in table


def test_each_comparison_file_has_its_own_table(root):
    """The AVX2 comparison is read from its own file, and the default table is not."""
    comparison = json.loads((root / "results" / "recipe-vs-baseline.json").read_text())
    comparison["bleu_difference"] = 9.66
    (root / "results" / "recipe-vs-baseline-avx2.json").write_text(json.dumps(comparison))
    both = f"{begin_marker('recipe-vs-baseline')}\n{end_marker('recipe-vs-baseline')}\n" + (
        f"{begin_marker('recipe-vs-baseline-avx2')}\n{end_marker('recipe-vs-baseline-avx2')}\n"
    )
    default, avx2 = rewrite(both, root).split(begin_marker("recipe-vs-baseline-avx2"))
    assert "**+9.7**" in avx2 and "**+9.7**" not in default and "results/recipe-vs-baseline-avx2.json" in avx2


def test_bad_markers_are_errors_naming_them(root):
    with pytest.raises(StaleTableError, match=r"unknown table marker\(s\) \['memory'\]"):
        rewrite(f"{begin_marker('memory')}\n{end_marker('memory')}\n", root)
    with pytest.raises(StaleTableError, match="unpaired table markers"):
        rewrite(f"{begin_marker('ablations')}\ntext\n", root)
    with pytest.raises(StaleTableError, match="unpaired table markers"):
        rewrite(f"{end_marker('ablations')}\n{begin_marker('ablations')}\n", root)


def test_the_ablations_table_comes_from_results_ablations(root):
    folder = root / "results" / "ablations"
    folder.mkdir()
    result = {
        "row": "recipe",
        "seed": 1,
        "description": "the quick recipe",
        "lr_group": None,
        "steps": 2600,
        "validation": {"bleu": 35.04, "chrf": 55.0},
        "test": {"bleu": 36.46, "chrf": 55.7},
    }
    (folder / "recipe-seed1.json").write_text(json.dumps(result))
    text = rewrite(f"{begin_marker('ablations')}\n{end_marker('ablations')}\n", root)
    assert "| `recipe` | the quick recipe | 1 | 2,600 | 35.0 | 36.5 | – | 55.7 |" in text


def test_a_copy_of_the_real_readme_with_every_marker_is_rebuilt_consistently(tmp_path):
    shutil.copy(REPO_ROOT / "README.md", tmp_path / "README.md")
    markers = "".join(f"\n{begin_marker(name)}\n{end_marker(name)}\n" for name in results_tables.TABLES)
    text = (tmp_path / "README.md").read_text() + markers
    rebuilt = rewrite(text, REPO_ROOT)
    assert rebuilt.startswith((REPO_ROOT / "README.md").read_text())
    assert stale_tables(rebuilt, REPO_ROOT) == [] and set(stale_tables(text, REPO_ROOT)) <= set(results_tables.TABLES)


def _long_run(
    root: Path, name: str, *, steps: int, validation: float, test: float, beam=(4, 2.2), seed: int = 1
) -> dict:
    """A recipe results file and its validation evaluation under `root` (numbers made up for the test)."""
    lc_tok = "nrefs:1|case:mixed|eff:no|tok:none|smooth:exp|version:2.6.0|pre:none(model-outputs-lc-tok-text)"
    decoding = {"num_beams": beam[0], "length_penalty": beam[1]}
    results = {"steps": steps, "epochs": steps / 250, "machine": MACHINE, "seed": seed,
               "test": {**decoding, "bleu_tok_lc": test, "bleu_tok_lc_signature": lc_tok}}  # fmt: skip
    (root / "results" / f"{name}.json").write_text(json.dumps(results))
    (root / "results" / f"{name}-validation.json").write_text(json.dumps({**decoding, "bleu_tok_lc": validation}))
    return {"run": name, "results": f"results/{name}.json", "validation": f"results/{name}-validation.json"}


def test_the_long_runs_table_reads_each_listed_run_from_its_files(root):
    runs = [
        _long_run(root, "run-a", steps=11157, validation=41.559, test=39.705),
        _long_run(root, "run-b", steps=9981, validation=40.61, test=39.914, beam=(5, 1.8)),
    ]
    runs[0]["chosen"] = True
    index = {"description": "Two runs.", "runs": runs}
    (root / "results" / "en-de-long-runs.json").write_text(json.dumps(index))
    text = rewrite(f"{begin_marker('en-de-long-runs')}\n{end_marker('en-de-long-runs')}\n", root)
    assert "| run-a | 11,157 (45) | 2 | beam 4, α 2.2 | **41.56** | **39.70** | `results/run-a.json`, " in text
    assert "| run-b | 9,981 (40) | 2 | beam 5, α 1.8 | 40.61 | 39.91 | `results/run-b.json`, " in text
    assert "Two runs. lc-tok: lowercased, Moses-tokenised BLEU, `nrefs:1|" in text
    assert "The chosen setting over" not in text  # one seed of it: no spread

    # The chosen setting with another seed: the spread of its seeds follows the table.
    runs.append(_long_run(root, "run-c", steps=9866, validation=42.16, test=40.48, seed=2))
    runs[-1]["seed_of_chosen"] = True
    (root / "results" / "en-de-long-runs.json").write_text(json.dumps(index))
    text = rewrite(f"{begin_marker('en-de-long-runs')}\n{end_marker('en-de-long-runs')}\n", root)
    assert (
        "The chosen setting over its 2 seeds (1, 2; mean ± sample standard deviation): validation lc-tok "
        "41.86 ± 0.42 (from 41.56 to 42.16), test lc-tok 40.09 ± 0.55 (from 39.70 to 40.48)." in text
    )

    # A validation score of another decoding than the test's is not that run's choice: an error naming the files.
    (root / "results" / "run-b-validation.json").write_text(json.dumps({"num_beams": 4, "length_penalty": 1.8}))
    with pytest.raises(ValueError, match="run-b-validation.json was not decoded as results/run-b.json"):
        rewrite(f"{begin_marker('en-de-long-runs')}\n{end_marker('en-de-long-runs')}\n", root)
