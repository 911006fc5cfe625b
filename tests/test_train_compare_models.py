"""train/compare_models.py: the side-by-side table is computed from a run's files, checked against
sacreBLEU, the model's own parameter count and a hand-written metrics log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sacrebleu.metrics import BLEU

import hf_vanilla_transformer as hvt
from tests.helpers import TINY_SIZES
from train import compare_models

SOURCES = ["ein hund", "zwei kleine kinder spielen im sand am strand " * 2, "eine frau mit einem hut und einer tasche"]
REFERENCES = ["a dog", "two small children play in the sand on the beach twice over", "a woman with a hat and a bag"]
HYPOTHESES = ["a dog", "two children play in sand on a beach", "a woman with a hat and bag"]


def test_length_buckets_cover_every_length_once():
    for words in range(1, 200):
        matching = [b for b in compare_models.LENGTH_BUCKETS if b[0] <= words <= b[1]]
        assert len(matching) == 1
    assert compare_models.bucket_of("a " * 8) == (1, 8) and compare_models.bucket_of("a " * 9) == (9, 11)


def test_bleu_of_one_bucket_is_sacrebleu_of_its_sentences():
    scores = compare_models.bleu_by_length(SOURCES, HYPOTHESES, REFERENCES)
    short = [0, 2]  # 2 and 8 words
    expected = BLEU().corpus_score([HYPOTHESES[i] for i in short], [[REFERENCES[i] for i in short]]).score
    assert scores["1-8"] == {"sentences": 2, "bleu": pytest.approx(expected)}
    assert scores["15+"]["sentences"] == 1 and scores["9-11"] == {"sentences": 0, "bleu": None}
    with pytest.raises(ValueError, match="2 hypotheses"):
        compare_models.bleu_by_length(SOURCES, HYPOTHESES[:2], REFERENCES)


def test_parameters_are_the_models_own_count_with_tied_matrices_once(tmp_path):
    model = hvt.VanillaTransformerForConditionalGeneration(hvt.VanillaTransformerConfig(**TINY_SIZES))
    model.save_pretrained(tmp_path)
    assert compare_models.parameter_count(tmp_path) == model.num_parameters()


def write_run(run_dir: Path, data_dir: Path, eval_losses: dict[int, float]) -> None:
    """A finished run's files, as `train.train` writes them, for a tiny model."""
    for split, src, tgt in (("test", SOURCES, REFERENCES), ("train", SOURCES, REFERENCES)):
        (data_dir / f"{split}.de").write_text("\n".join(src) + "\n", encoding="utf-8")
        (data_dir / f"{split}.en").write_text("\n".join(tgt) + "\n", encoding="utf-8")
    model_dir = run_dir / "model"
    hvt.VanillaTransformerForConditionalGeneration(hvt.VanillaTransformerConfig(**TINY_SIZES)).save_pretrained(
        model_dir
    )
    config = {"dataset": str(data_dir), "src_lang": "de", "tgt_lang": "en", "test_split": "test", "data_dir": None}
    (run_dir / "train_config.json").write_text(json.dumps(config))
    (run_dir / "summary.json").write_text(json.dumps({"steps": 400, "epochs": 2.0, "seed": 1}))
    (model_dir / "hyp.test.en").write_text("\n".join(HYPOTHESES) + "\n", encoding="utf-8")
    bleu = BLEU().corpus_score(HYPOTHESES, [REFERENCES])
    results = {"bleu": bleu.score, "bleu_signature": "sig", "chrf": 50.0, "chrf_signature": "sig", "num_beams": 4}
    (model_dir / "results.test.json").write_text(json.dumps(results | {"translate_seconds": 1.5}))
    rows = [{"step": step, "eval_loss": loss} for step, loss in eval_losses.items()]
    rows.append({"step": 400, "train_runtime": 600.0})  # 10 minutes for 400 steps
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_a_run_becomes_one_row_of_the_table(tmp_path):
    run_dir, data_dir = tmp_path / "run", tmp_path / "data"
    data_dir.mkdir()
    write_run(run_dir, data_dir, {100: 4.0, 200: 2.9, 300: 2.5})
    rows = compare_models.main(
        [
            f"transformer={run_dir}",
            "--loss",
            "3.0",
            "--json",
            str(tmp_path / "t.json"),
            "--figure",
            str(tmp_path / "f.png"),
        ]
    )
    row = rows[0]
    assert row["minutes_per_epoch"] == pytest.approx(10 / 2.0)
    assert row["minutes_to_validation_loss"] == pytest.approx(200 * 10 / 400)  # the first validation at <= 3.0
    assert row["decoding"]["sentences_per_second"] == pytest.approx(3 / 1.5)
    assert row["bleu_by_source_length"]["1-8"]["sentences"] == 2
    assert json.loads((tmp_path / "t.json").read_text())["rows"][0]["name"] == "transformer"
    assert (tmp_path / "f.png").stat().st_size > 0
    table = compare_models.markdown_table(rows)
    assert "| transformer (`vanilla_transformer`) |" in table and "min to val loss 3.0" in table


def test_a_loss_never_reached_is_said(tmp_path):
    run_dir, data_dir = tmp_path / "run", tmp_path / "data"
    data_dir.mkdir()
    write_run(run_dir, data_dir, {100: 4.0, 200: 3.5})
    assert compare_models.minutes_to_loss(run_dir, 3.0) is None
    assert "not reached" in compare_models.markdown_table([compare_models.describe_run("rnn", run_dir, 3.0)])


def test_an_unfinished_run_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        compare_models.main([f"rnn={tmp_path}"])
    assert "not a finished training run" in capsys.readouterr().err
