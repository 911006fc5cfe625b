"""train/ablations.py: each row is a real change of the model or training settings; rows run, resume and
skip; the table's mean ± spread and the validation curve's minutes against hand computations."""

from __future__ import annotations

import dataclasses
import json
import statistics
from pathlib import Path

import pytest
import torch

import hf_vanilla_transformer as hvt
from tests.helpers import MISSING_DATA, MULTI30K, TINY_SIZES
from tests.train_helpers import one_thread, tiny_settings, write_slice  # noqa: F401 (autouse fixture)
from train import ablations
from train.ablations import ABLATIONS, BY_NAME, ablation_table, row_config, run_ablations, validation_curve
from train.config import TrainConfig

TRAINED = [a for a in ABLATIONS if a.scored_from is None]
MODEL_FIELDS = {f.name for f in dataclasses.fields(hvt.VanillaTransformerConfig)}
TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


@pytest.mark.parametrize("ablation", TRAINED, ids=lambda a: a.name)
def test_each_override_is_a_real_setting_and_changes_it(ablation, tmp_path):
    cfg = row_config(ablation, seed=2, minutes=3, runs_dir=tmp_path)
    recipe = row_config(BY_NAME["recipe"], seed=2, minutes=3, runs_dir=tmp_path)
    model_config = hvt.VanillaTransformerConfig.from_preset(cfg.preset, **cfg.model)
    for key, value in ablation.overrides.items():
        if key.startswith("model."):
            name = key.removeprefix("model.")
            assert name in MODEL_FIELDS and getattr(model_config, name) == value
        else:
            assert key in TRAIN_FIELDS and getattr(cfg, key) == value
    changed = {k for k in TRAIN_FIELDS if getattr(cfg, k) != getattr(recipe, k)} - {"output_dir"}
    assert changed == ({"model"} if any(k.startswith("model.") for k in ablation.overrides) else set()) | {
        k for k in ablation.overrides if not k.startswith("model.")
    }
    assert cfg.seed == 2 and cfg.max_train_minutes == 3 and cfg.output_dir == str(tmp_path / f"{ablation.name}-seed2")
    assert not cfg.tunes_decoding  # every row decodes as §6.1 (beam 4, alpha 0.6): rows differ in training only


def test_head_rows_keep_d_model_and_split_it_into_heads():
    for name, heads in (("heads-1", 1), ("heads-8", 8)):
        cfg = row_config(BY_NAME[name], seed=1, minutes=None, runs_dir=Path("runs"))
        config = hvt.VanillaTransformerConfig.from_preset(cfg.preset, **cfg.model)
        assert config.d_model == 256 and config.encoder_attention_heads == config.decoder_attention_heads == heads
        assert config.head_dim * heads == config.d_model


def test_score_rows_build_models_with_that_attention_score():
    for name, score in (("unscaled-scores", "dot_product"), ("additive-scores", "additive")):
        cfg = row_config(BY_NAME[name], seed=1, minutes=None, runs_dir=Path("runs"))
        config = hvt.VanillaTransformerConfig.from_preset(cfg.preset, **cfg.model)
        assert config.attention_score == score
        model = hvt.VanillaTransformerForConditionalGeneration(hvt.VanillaTransformerConfig(**TINY_SIZES, **cfg.model))
        attention = model.model.encoder.layers[0].self_attn
        if score == "dot_product":
            assert attention.scaling == 1.0 and attention.additive_score is None
        else:
            assert attention.additive_score is not None


def test_untied_row_gives_three_separate_embedding_matrices():
    cfg = row_config(BY_NAME["untied-embeddings"], seed=1, minutes=None, runs_dir=Path("runs"))
    untied = {k: v for k, v in cfg.model.items() if k in ("share_encoder_decoder_embeddings", "tie_word_embeddings")}
    model = hvt.VanillaTransformerForConditionalGeneration(hvt.VanillaTransformerConfig(**TINY_SIZES, **untied))
    pointers = {
        model.model.encoder.embed_tokens.weight.data_ptr(),
        model.model.decoder.embed_tokens.weight.data_ptr(),
        model.lm_head.weight.data_ptr(),
    }
    assert len(pointers) == 3
    tied = hvt.VanillaTransformerForConditionalGeneration(hvt.VanillaTransformerConfig(**TINY_SIZES))
    assert tied.lm_head.weight.data_ptr() == tied.model.encoder.embed_tokens.weight.data_ptr()


def test_rows_scored_from_a_run_train_nothing():
    assert {a.name for a in ABLATIONS if a.scored_from} == {"no-averaging", "greedy"}
    with pytest.raises(ValueError, match="trains nothing"):
        row_config(BY_NAME["greedy"], seed=1, minutes=None, runs_dir=Path("runs"))
    with pytest.raises(ValueError, match=r"unknown ablation row\(s\) \['heads-3'\]"):
        run_ablations(["heads-3"], [1])


# ---- a sweep of tiny runs --------------------------------------------------------------------------


@pytest.mark.skipif(not MULTI30K.is_dir(), reason=MISSING_DATA)
def test_a_sweep_trains_each_run_once_scores_it_and_skips_finished_rows(tmp_path, monkeypatch):
    data = write_slice(tmp_path / "data")
    tiny = tiny_settings(data, tmp_path / "unused", max_steps=8, eval_steps=4, max_eval_samples=20)
    overrides = [f"{k}={json.dumps(v)}" for k, v in tiny.items() if k != "output_dir"]
    trained = []
    real_train = ablations.train
    monkeypatch.setattr(ablations, "train", lambda cfg, resume=False: trained.append(cfg.output_dir) or real_train(cfg))
    kwargs = dict(runs_dir=tmp_path / "runs", results_dir=tmp_path / "results", overrides=overrides)
    results = run_ablations(["greedy", "recipe", "no-averaging"], [3], **kwargs)
    assert trained == [str(tmp_path / "runs" / "recipe-seed3")]  # one training, before the rows scored from it
    by_row = {r["row"]: r for r in results}
    recipe_test = json.loads((tmp_path / "runs" / "recipe-seed3" / "model" / "results.test2016.json").read_text())
    assert by_row["recipe"]["test"]["bleu"] == pytest.approx(recipe_test["bleu"])  # the run's own test score
    assert by_row["recipe"]["decoding"]["num_beams"] == 2 and by_row["greedy"]["decoding"]["num_beams"] == 1
    assert by_row["no-averaging"]["model_dir"].endswith("checkpoint-8")
    assert by_row["recipe"]["model_dir"].endswith("model")
    for row in by_row.values():
        assert row["steps"] == 8 and row["seed"] == 3 and row["machine"]["torch"] == torch.__version__
        assert row["validation"]["split"] == "val" and row["test"]["split"] == "test2016"
        assert "tok:13a" in row["validation"]["bleu_signature"] and "nc:6" in row["test"]["chrf_signature"]
        assert (tmp_path / "results" / f"{row['row']}-seed3.json").is_file()

    monkeypatch.setattr(ablations, "score_run", lambda *a, **k: pytest.fail("a finished row was scored again"))
    assert run_ablations(["recipe", "greedy", "no-averaging"], [3], **kwargs) == [
        by_row["recipe"],
        by_row["greedy"],
        by_row["no-averaging"],
    ]
    assert trained == [str(tmp_path / "runs" / "recipe-seed3")]
    table = ablation_table(tmp_path / "results")
    assert table.count("\n") == 2 + 3 and "`greedy`" in table
    png = ablations.plot_validation_bleu(["recipe", "heads-8", "greedy"], tmp_path / "results", tmp_path / "fig.png")
    assert png.stat().st_size > 5_000
    with pytest.raises(ValueError, match="nothing to plot"):
        ablations.plot_validation_bleu(["greedy"], tmp_path / "results", tmp_path / "fig.png")


# ---- table and curve from hand-made results ---------------------------------------------------------


def write_result(folder: Path, row: str, seed: int, val: float, test: float, lr_group=None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    result = {
        "row": row,
        "seed": seed,
        "description": f"change {row}",
        "lr_group": lr_group,
        "steps": 1000 + seed,
        "validation": {"bleu": val, "chrf": val + 20},
        "test": {"bleu": test, "chrf": test + 20},
    }
    (folder / f"{row}-seed{seed}.json").write_text(json.dumps(result))


def test_table_reports_mean_and_sample_sd_over_seeds_and_the_difference_to_the_recipe(tmp_path):
    for seed, (val, test) in enumerate([(30.0, 31.0), (32.0, 33.0), (34.0, 38.0)], start=1):
        write_result(tmp_path, "recipe", seed, val, test, lr_group="post-LN")
    write_result(tmp_path, "heads-1", 1, 28.0, 29.0)
    write_result(tmp_path, "heads-1", 3, 29.0, 30.5)
    write_result(tmp_path, "post-ln-lr2x", 1, 35.0, 20.0, lr_group="post-LN")
    lines = ablation_table(tmp_path).splitlines()
    recipe = next(line for line in lines if line.startswith("| `recipe`"))
    sd = statistics.stdev([31.0, 33.0, 38.0])  # sample standard deviation of the test BLEU
    assert f"| 32.0 ± 2.0 | {34.0:.1f} ± {sd:.1f} | – |" in recipe and "| 1,2,3 | 1,002 |" in recipe
    heads = next(line for line in lines if line.startswith("| `heads-1`"))
    # Δ is over the seeds both rows have: (29 - 31) and (30.5 - 38), averaged.
    assert "| 28.5 ± 0.7 | 29.8 ± 1.1 | -4.8 |" in heads
    # The learning-rate group's best is chosen on validation (35 > mean 32), whatever its test score.
    assert lines[[i for i, line in enumerate(lines) if "post-ln-lr2x" in line][0]].startswith(
        "| `post-ln-lr2x` (best LR of its group on validation)"
    )
    assert "best LR" not in recipe
    assert [line.split("`")[1] for line in lines[2:]] == ["recipe", "heads-1", "post-ln-lr2x"]  # ABLATIONS order


def test_validation_curve_maps_steps_to_minutes_at_the_runs_mean_step_rate(tmp_path):
    rows = [
        {"step": 1, "loss": 9.0},
        {"step": 50, "eval_bleu": 10.0},
        {"step": 100, "eval_bleu": 20.0},
        {"step": 120, "eval_bleu": 22.0},
        {"step": 120, "eval_bleu": 22.0},
        {"step": 120, "train_runtime": 600.0},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    minutes, bleu = validation_curve(tmp_path)
    assert minutes == pytest.approx([50 * 10 / 120, 100 * 10 / 120, 10.0]) and bleu == [10.0, 20.0, 22.0]
