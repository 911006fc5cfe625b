"""train/baseline.py (plain Hugging Face: MarianMTModel + Seq2SeqTrainer) and train/compare_baseline.py
(the recipe, then the baseline for the same training minutes). The baseline really trains (a 1+1-layer
Marian, 3 steps); the comparison's two trainings are replaced by fakes that write what the real ones do."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from sacrebleu.metrics import BLEU

from hf_vanilla_transformer.configuration_vanilla_transformer import PRESETS
from tests.helpers import MISSING_DATA, MULTI30K, ONE_LAYER_SIZES
from tests.train_helpers import one_thread, tiny_settings, write_slice  # noqa: F401 (autouse fixture)
from train import compare_baseline
from train.baseline import SIZE_FIELDS, BaselineSettings, recipe_config, recipe_sizes, train_baseline
from train.config import TrainConfig
from train.precision import machine_description
from train.recipe import SETTINGS

needs_multi30k = pytest.mark.skipif(not MULTI30K.is_dir(), reason=MISSING_DATA)

BLEU_SIG = "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"
CHRF_SIG = "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0"


def test_the_baseline_has_the_recipes_model_size():
    sizes = recipe_sizes(TrainConfig.load(SETTINGS["quick"], ["model.encoder_layers=4"]))
    assert sizes == {field: PRESETS["small"][field] for field in SIZE_FIELDS} | {"encoder_layers": 4}


def test_a_runs_train_config_json_gives_back_its_config(tmp_path):
    cfg = TrainConfig.load(SETTINGS["quick"], ["seed=4"])
    (tmp_path / "train_config.json").write_text(json.dumps(cfg.to_dict()))
    assert recipe_config(tmp_path / "train_config.json") == cfg
    assert recipe_config(SETTINGS["quick"]) == TrainConfig.load(SETTINGS["quick"])


def test_baseline_settings_reject_bad_values():
    with pytest.raises(ValueError, match="sampling must be"):
        BaselineSettings(sampling="sorted")
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        BaselineSettings(batch_size=0)


@needs_multi30k
def test_baseline_trains_marian_and_scores_the_test_split(tmp_path):
    data = write_slice(tmp_path / "data")
    cfg = TrainConfig.from_dict(tiny_settings(data, tmp_path / "unused"))
    settings = BaselineSettings(
        minutes=30, max_steps=3, warmup_steps=1, batch_size=16, num_beams=2, max_new_tokens=8, output_dir=str(tmp_path)
    )
    results = train_baseline(cfg, settings, sizes=ONE_LAYER_SIZES)
    assert results["steps"] == 3 and results["stopped_by"] == "max_steps"
    assert results["settings"] == dataclasses.asdict(settings)
    assert json.loads((tmp_path / "results.test2016.json").read_text()) == json.loads(json.dumps(results))
    hypotheses = (tmp_path / "hyp.test2016.en").read_text(encoding="utf-8").split("\n")[:-1]
    references = (data / "test2016.en").read_text(encoding="utf-8").splitlines()
    assert len(hypotheses) == len(references) == results["num_sentences"] == 30
    assert results["bleu"] == pytest.approx(BLEU().corpus_score(hypotheses, [references]).score)
    assert results["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|")


def test_training_minutes_sum_the_train_runtimes_of_a_resumed_run(tmp_path):
    rows = [{"step": 5, "loss": 3.0}, {"step": 10, "train_runtime": 300.0}, {"step": 20, "train_runtime": 150.0}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    minutes, source = compare_baseline.training_minutes(tmp_path, fallback=12)
    assert minutes == pytest.approx(7.5) and "train_runtime" in source
    assert compare_baseline.training_minutes(tmp_path / "nothing", fallback=12)[0] == 12
    with pytest.raises(ValueError, match="no train_runtime"):
        compare_baseline.training_minutes(tmp_path / "nothing")


# ---- the comparison, with fake trainings ---------------------------------------------------------


def fake_summary(bleu: float, seed: int, machine: dict) -> dict:
    test = {
        "bleu": bleu,
        "bleu_signature": BLEU_SIG,
        "chrf": bleu + 20,
        "chrf_signature": CHRF_SIG,
        "num_beams": 4,
        "length_penalty": 0.6,
        "length_penalty_form": "gnmt",
    }
    return {"steps": 2600, "epochs": 5.2, "precision": "bf16", "seed": seed, "machine": machine, "test": test}


@pytest.fixture
def fakes(monkeypatch):
    """Replace both trainings; record their calls in order."""
    calls = []

    def fake_train(cfg, resume=False):
        calls.append(("recipe", cfg, resume))
        out = Path(cfg.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(cfg.to_dict()))
        (out / "metrics.jsonl").write_text(json.dumps({"step": 2600, "train_runtime": 660.0}) + "\n")
        summary = fake_summary(36.0, cfg.seed, machine_description())
        (out / "summary.json").write_text(json.dumps(summary))
        return summary

    def fake_baseline(cfg, settings):
        calls.append(("baseline", cfg, settings))
        results = {
            "bleu": 32.5,
            "bleu_signature": BLEU_SIG,
            "chrf": 51.0,
            "chrf_signature": CHRF_SIG,
            "model": "MarianMTModel",
            "decoding": "beam 4",
            "steps": 1200,
            "epochs": 2.6,
            "stopped_by": "time budget",
            "training_minutes": settings.minutes,
            "precision": "fp32",
            "seed": settings.seed,
            "settings": dataclasses.asdict(settings),
            "machine": machine_description(),
        }
        path = Path(settings.output_dir) / f"results.{cfg.test_split}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results))
        return results

    monkeypatch.setattr(compare_baseline, "train", fake_train)
    monkeypatch.setattr(compare_baseline, "train_baseline", fake_baseline)
    return calls


def test_compare_trains_the_recipe_then_the_baseline_for_its_training_minutes(fakes, tmp_path):
    output = tmp_path / "recipe-vs-baseline.json"
    result = compare_baseline.compare(
        "quick", seed=3, overrides=["num_threads=1"], work_dir=tmp_path / "work", output=output
    )
    assert [call[0] for call in fakes] == ["recipe", "baseline"]
    _, recipe_cfg, resume = fakes[0]
    _, baseline_cfg, settings = fakes[1]
    assert recipe_cfg.seed == 3 and not resume and recipe_cfg.output_dir == str(tmp_path / "work" / "recipe")
    assert settings.minutes == pytest.approx(11.0)  # the recipe's train_runtime, 660 s
    assert settings.seed == 3 and baseline_cfg.dataset == recipe_cfg.dataset
    assert json.loads(output.read_text()) == result
    assert result["bleu_difference"] == pytest.approx(36.0 - 32.5)
    assert result["chrf_difference"] == pytest.approx(56.0 - 51.0)
    assert result["recipe"]["bleu_signature"] == result["baseline"]["bleu_signature"] == BLEU_SIG
    assert result["recipe"]["training_minutes"] == pytest.approx(11.0)
    assert result["seed"] == 3 and result["same_machine"] and result["test_split"] == "test"
    assert result["command"] == "python -m train.compare_baseline --seed 3 num_threads=1"
    assert recipe_cfg.num_threads == settings.num_threads == 1  # the baseline runs on the recipe's threads
    config = tmp_path / "work" / "recipe" / "train_config.json"
    assert result["baseline"]["command"].startswith(f"python -m train.baseline --config {config} --minutes 11.00 ")
    assert result["recipe"]["command"] == "python -m train.recipe --setting quick num_threads=1 seed=3"

    # Run again: both halves have finished and are reused, not retrained.
    again = compare_baseline.compare(
        "quick", seed=3, overrides=["num_threads=1"], work_dir=tmp_path / "work", output=output
    )
    assert len(fakes) == 2 and again == result


def test_compare_resumes_an_interrupted_recipe_and_retrains_a_baseline_with_other_settings(fakes, tmp_path):
    checkpoint = tmp_path / "work" / "recipe" / "checkpoint-100"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text("{}")
    compare_baseline.compare("quick", work_dir=tmp_path / "work", output=tmp_path / "a.json")
    assert fakes[0][0] == "recipe" and fakes[0][2] is True  # resumed
    compare_baseline.compare(
        "quick", work_dir=tmp_path / "work", output=tmp_path / "b.json", baseline={"batch_size": 32}
    )
    assert [call[0] for call in fakes] == ["recipe", "baseline", "baseline"]
    assert fakes[-1][2].batch_size == 32


def test_skip_recipe_uses_a_finished_run_and_records_a_different_machine(fakes, tmp_path):
    run = tmp_path / "finished"
    run.mkdir()
    cfg = TrainConfig.load(SETTINGS["quick"], [f"output_dir={run}"])
    (run / "train_config.json").write_text(json.dumps(cfg.to_dict()))
    (run / "summary.json").write_text(json.dumps(fake_summary(35.0, 1, {**machine_description(), "cpu": "other"})))
    result = compare_baseline.compare(skip_recipe=run, work_dir=tmp_path / "work", output=tmp_path / "c.json")
    assert [call[0] for call in fakes] == ["baseline"]
    assert fakes[0][2].minutes == cfg.max_train_minutes  # no metrics.jsonl: the configured budget
    assert result["recipe"]["run_dir"] == str(run) and result["same_machine"] is False
    # The allocator a process chose (train/allocator.py) is not the machine.
    (run / "summary.json").write_text(
        json.dumps(fake_summary(35.0, 1, {**machine_description(), "memory_allocator": "glibc, freed memory kept"}))
    )
    assert compare_baseline.compare(skip_recipe=run, work_dir=tmp_path / "work", output=tmp_path / "e.json")[
        "same_machine"
    ]
    with pytest.raises(FileNotFoundError, match="no finished run"):
        compare_baseline.compare(skip_recipe=tmp_path / "empty", work_dir=tmp_path / "work", output=tmp_path / "d.json")


def test_a_baseline_whose_schedule_ends_before_its_minutes_is_flagged(fakes, tmp_path, monkeypatch, caplog):
    train_baseline = compare_baseline.train_baseline

    def short_schedule(cfg, settings):
        results = train_baseline(cfg, settings)
        results.update(stopped_by="max_steps", training_minutes=settings.minutes / 2)
        return results

    monkeypatch.setattr(compare_baseline, "train_baseline", short_schedule)
    result = compare_baseline.compare(
        "quick", work_dir=tmp_path / "work", output=tmp_path / "c.json", baseline={"max_steps": 900}
    )
    assert result["baseline_used_its_minutes"] is False
    assert "--max-steps 900" in result["command"]
    assert "trained for less time than the recipe" in caplog.text
    monkeypatch.setattr(compare_baseline, "train_baseline", train_baseline)  # stops on time
    time_budget = compare_baseline.compare("quick", work_dir=tmp_path / "work2", output=tmp_path / "d.json")
    assert time_budget["baseline_used_its_minutes"] is True


def test_the_baseline_also_gets_the_minutes_the_recipe_spent_on_its_word_vectors(fakes, tmp_path):
    """`init_embeddings: word2vec` trains vectors before the model: the same wall clock means the baseline gets
    those minutes too."""
    import numpy as np

    from tests._tiny_tokenizer import tiny_tokenizer
    from train.init_embeddings import RUN_WORD_VECTORS
    from train.word_vectors import WordVectors, tokenizer_vocab_hash

    run = tmp_path / "finished"
    run.mkdir()
    cfg = TrainConfig.load(SETTINGS["quick"], [f"output_dir={run}"])
    (run / "train_config.json").write_text(json.dumps(cfg.to_dict()))
    (run / "metrics.jsonl").write_text(json.dumps({"step": 2600, "train_runtime": 660.0}) + "\n")
    (run / "summary.json").write_text(json.dumps(fake_summary(35.0, 1, machine_description())))
    tokenizer = tiny_tokenizer()
    vectors = WordVectors(np.ones((len(tokenizer), 4)), np.ones(len(tokenizer), bool), tokenizer_vocab_hash(tokenizer))
    vectors.metadata["minutes"] = "0.500"
    vectors.save(run / RUN_WORD_VECTORS)
    result = compare_baseline.compare(skip_recipe=run, work_dir=tmp_path / "work", output=tmp_path / "c.json")
    assert fakes[0][2].minutes == pytest.approx(11.5)
    assert result["recipe"]["training_minutes_source"].endswith("+ 0.50 min of word2vec before it")
