"""`train.seed_spread`: the spread of finished runs that differ only in their seed, and the README table built from
it. The runs here are folders with the two files the tool reads (no training)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from train import results_tables, seed_spread

MACHINE = {"cpu": "Some CPU", "cpu_flags": ["avx2"], "torch_threads": 2}


def finished_run(folder: Path, seed: int, bleu: float, chrf: float, **config_changes) -> Path:
    folder.mkdir(parents=True)
    config = {"dataset": "multi30k", "src_lang": "de", "tgt_lang": "en", "seed": seed, "output_dir": str(folder)}
    (folder / "train_config.json").write_text(json.dumps({**config, **config_changes}))
    summary = {
        "seed": seed,
        "steps": 3000 + seed,
        "epochs": 6.0,
        "minutes_until_trained": 12.1,
        "precision": "bf16",
        "machine": MACHINE,
        "best_validation_bleu": bleu - 1.0,
        "test": {
            "dataset": "multi30k",
            "split": "test",
            "num_beams": 4,
            "length_penalty": 1.0,
            "bleu": bleu,
            "bleu_signature": "nrefs:1|tok:13a",
            "chrf": chrf,
            "chrf_signature": "nrefs:1|nc:6",
        },
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def test_the_spread_of_three_seeds(tmp_path):
    runs = [
        finished_run(tmp_path / f"s{seed}", seed, bleu, 60.0 + seed) for seed, bleu in ((1, 39.0), (2, 40.0), (3, 38.5))
    ]
    result = seed_spread.main([*map(str, runs), "--json", str(tmp_path / "seeds.json")])
    assert [run["seed"] for run in result["runs"]] == [1, 2, 3]
    bleu = result["spread"]["bleu"]
    assert bleu["mean"] == pytest.approx(statistics.mean([39.0, 40.0, 38.5]))
    assert bleu["sd"] == pytest.approx(statistics.stdev([39.0, 40.0, 38.5]))
    assert (bleu["min"], bleu["max"]) == (38.5, 40.0)
    assert result["spread"]["validation_bleu"]["max"] == 39.0
    assert json.loads((tmp_path / "seeds.json").read_text())["command"].startswith("python -m train.seed_spread")


def test_the_readme_table_from_the_results_file(tmp_path):
    runs = [finished_run(tmp_path / f"s{seed}", seed, bleu, 60.0) for seed, bleu in ((1, 39.0), (2, 40.0))]
    (tmp_path / "results").mkdir()
    seed_spread.main([*map(str, runs), "--json", str(tmp_path / "results" / "recipe-seeds.json")])
    table = results_tables.recipe_seeds_table(tmp_path)
    assert "| 2 | 12.1 min: 3,002 steps, 6.0 epochs | 39.0 | 1.0 | 40.0 | 60.0 |" in table
    assert (
        "| **mean ± sd (range)** | | 38.5 ± 0.7 (38.0-39.0) | | 39.5 ± 0.7 (39.0-40.0) | 60.0 ± 0.0 (60.0-60.0) |"
        in table
    )
    assert "nrefs:1|tok:13a" in table and "Some CPU (avx2), 2 threads" in table and "multi30k test_2016_flickr" in table


def test_runs_of_different_settings_are_refused_naming_the_difference(tmp_path):
    first = finished_run(tmp_path / "a", 1, 39.0, 60.0)
    other = finished_run(tmp_path / "b", 2, 40.0, 60.0, dataset="tatoeba-cmn-eng")
    with pytest.raises(ValueError, match="differ in more than the seed: dataset"):
        seed_spread.seed_spread([first, other])


def test_the_same_seed_twice_one_run_or_an_unfinished_run_is_refused(tmp_path):
    first = finished_run(tmp_path / "a", 1, 39.0, 60.0)
    again = finished_run(tmp_path / "b", 1, 40.0, 60.0)
    with pytest.raises(ValueError, match="differ in their seed"):
        seed_spread.seed_spread([first, again])
    with pytest.raises(ValueError, match="at least two runs"):
        seed_spread.seed_spread([first])
    unfinished = tmp_path / "c"
    unfinished.mkdir()
    (unfinished / "train_config.json").write_text((first / "train_config.json").read_text())
    with pytest.raises(ValueError, match="no finished run here"):
        seed_spread.seed_spread([first, unfinished])


def test_runs_on_different_machines_are_refused(tmp_path):
    first = finished_run(tmp_path / "a", 1, 39.0, 60.0)
    other = finished_run(tmp_path / "b", 2, 40.0, 60.0)
    summary = json.loads((other / "summary.json").read_text())
    summary["machine"] = {**MACHINE, "cpu": "Another CPU"}
    (other / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(ValueError, match="different machines"):
        seed_spread.seed_spread([first, other])
