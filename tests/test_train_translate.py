"""`train.translate` and `train.evaluate_model` on a tiny saved model folder: which decoding they use,
how they read input lines, and how they fail on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import GenerationMixin

from tests._tiny_tokenizer import tiny_tokenizer
from tests.helpers import tiny_model
from train import evaluate_model as evaluate_cli
from train import translate as translate_cli

SENTENCES = ["Ein Hund läuft.", "Zwei Männer stehen auf der Straße.", "Ein Mädchen malt."]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A model folder whose generation config departs from the paper's: beam 2, length penalty 1.0."""
    folder = tmp_path_factory.mktemp("model")
    tokenizer = tiny_tokenizer()
    model = tiny_model(vocab_size=len(tokenizer))
    model.generation_config.num_beams = 2
    model.generation_config.length_penalty = 1.0
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def used_configs(monkeypatch) -> list:
    """The generation configs `generate()` really decoded with (after merging its arguments)."""
    seen = []
    original = GenerationMixin._prepare_generation_config

    def record(self, *args, **kwargs):
        config, model_kwargs = original(self, *args, **kwargs)
        seen.append(config)
        return config, model_kwargs

    monkeypatch.setattr(GenerationMixin, "_prepare_generation_config", record)
    return seen


def write_text(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


# ---- decoding settings: the model's generation config unless the user gives one ----------------


def test_translate_cli_decodes_with_the_models_generation_config(model_dir, tmp_path, used_configs):
    source = write_text(tmp_path / "in.de", "\n".join(SENTENCES) + "\n")
    translate_cli.main([str(model_dir), "--input", str(source), "--output", str(tmp_path / "out.en")])
    assert used_configs and {(c.num_beams, c.length_penalty) for c in used_configs} == {(2, 1.0)}

    used_configs.clear()
    translate_cli.main(
        [str(model_dir), "--input", str(source), "--output", str(tmp_path / "out.en"), "--beams", "3"]
        + ["--length-penalty", "0.6"]
    )
    assert {(c.num_beams, c.length_penalty) for c in used_configs} == {(3, 0.6)}


def test_evaluate_model_decodes_and_records_the_models_generation_config(model_dir, tmp_path, used_configs):
    data = tmp_path / "data"
    data.mkdir()
    write_text(data / "test.de", "\n".join(SENTENCES) + "\n")
    write_text(data / "test.en", "A dog runs.\nTwo men stand on the street.\nA girl paints.\n")
    out = tmp_path / "eval"
    results = evaluate_cli.evaluate_model(model_dir, dataset=str(data), split="test", output_dir=out)
    assert {(c.num_beams, c.length_penalty) for c in used_configs} == {(2, 1.0)}
    recorded = json.loads((out / "results.test.json").read_text(encoding="utf-8"))
    assert (recorded["num_beams"], recorded["length_penalty"]) == (2, 1.0) == (results["num_beams"], 1.0)
    assert recorded["max_new_tokens_over_input"] == 50 and recorded["max_new_tokens"] is None

    used_configs.clear()
    evaluate_cli.main([str(model_dir), "--dataset", str(data), "--split", "test", "--output-dir", str(out)])
    evaluate_cli.main(
        [str(model_dir), "--dataset", str(data), "--split", "test", "--output-dir", str(out), "--beams", "1"]
    )
    assert [c.num_beams for c in used_configs] == [2, 1]
    recorded = json.loads((out / "results.test.json").read_text(encoding="utf-8"))
    assert (recorded["num_beams"], recorded["length_penalty"]) == (1, 1.0)


def test_evaluate_model_reads_multi30k_and_its_tok_references_from_the_env_dir(model_dir, tmp_path, monkeypatch):
    """`$HVT_MULTI30K_DIR` names the copy for the text and for the `tok/` references alike."""
    copy = tmp_path / "m30k"
    (copy / "tok").mkdir(parents=True)
    for stem in ("train", "val", "test2016"):
        write_text(copy / f"{stem}.de", "\n".join(SENTENCES[:2]) + "\n")
        write_text(copy / f"{stem}.en", "A dog runs.\nTwo men stand on the street.\n")
    write_text(copy / "tok" / "test2016.en", "a dog runs .\ntwo men stand on the street .\n")
    monkeypatch.setenv("HVT_MULTI30K_DIR", str(copy))
    results = evaluate_cli.evaluate_model(model_dir, dataset="multi30k", split="test", output_dir=tmp_path / "out")
    assert results["num_sentences"] == 2  # the copy's test set, not another one
    assert "bleu_tok_lc" in results and "pre:moses-lc-norm-tok" in results["bleu_tok_lc_signature"]
    assert (tmp_path / "out" / "hyp.test.en").read_text(encoding="utf-8").count("\n") == 2
