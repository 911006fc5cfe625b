"""train/: the training entry point end to end on a slice of Multi30k with a tiny model:
train -> average -> evaluate -> translate, fine-tuning, 2 processes (DDP), the recipe. (Interrupted
runs, full disks and damaged files: tests/test_fault_injection.py.)"""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers import MISSING_DATA, MULTI30K, REPO_ROOT
from tests.network import free_port
from tests.train_helpers import TINY_MODEL, tiny_settings, train_command, write_slice
from train import translate as translate_cli
from train.config import TrainConfig
from train.train import build_model, last_complete_checkpoint, train

pytestmark = pytest.mark.skipif(not MULTI30K.is_dir(), reason=MISSING_DATA)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_slice(tmp_path_factory.mktemp("m30k"))


@pytest.fixture(scope="module")
def finished_run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    summary = train(TrainConfig.from_dict(tiny_settings(data, out)))
    return out, summary


def test_run_writes_model_results_curves_and_card(finished_run):
    out, summary = finished_run
    model_dir = out / "model"
    assert summary["steps"] == 16
    assert summary["averaged_checkpoints"] == ["checkpoint-8", "checkpoint-12", "checkpoint-16"]
    for name in (
        "config.json",
        "model.safetensors",
        "generation_config.json",
        "tokenizer.json",
        "modeling_vanilla_transformer.py",
        "README.md",
        "results.test2016.json",
        "hyp.test2016.en",
    ):
        assert (model_dir / name).is_file(), name
    results = json.loads((model_dir / "results.test2016.json").read_text())
    assert results["num_sentences"] == 30
    assert "nrefs:1" in results["bleu_signature"] and "tok:13a" in results["bleu_signature"]
    assert len((model_dir / "hyp.test2016.en").read_text().splitlines()) == 30
    assert (out / "training_curves.png").stat().st_size > 10_000
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("eval_bleu" in r for r in rows) and any("loss" in r for r in rows)
    assert 0 <= summary["padding_fraction"] < summary["random_batching_padding_fraction"]
    card = (model_dir / "README.md").read_text()
    assert "pipeline_tag: translation" in card and "model-index" in card
    # Validation generated with Seq2SeqTrainer, which fills generation_config with transformers' defaults;
    # the saved model keeps its own (a saved max_length: 20 made every max_new_tokens call warn).
    generation = json.loads((model_dir / "generation_config.json").read_text())
    assert "max_length" not in generation and generation["num_beams"] == 4


def test_averaged_model_is_the_mean_of_the_last_checkpoints(finished_run):
    out, _ = finished_run
    states = [load_file(out / f"checkpoint-{s}" / "model.safetensors") for s in (8, 12, 16)]
    averaged = load_file(out / "model" / "model.safetensors")
    for key, value in averaged.items():
        expected = torch.stack([s[key].double() for s in states]).mean(0).to(value.dtype)
        torch.testing.assert_close(value, expected, rtol=0, atol=1e-7)


def test_translate_cli_reads_a_file_and_keeps_line_order(finished_run, tmp_path):
    out, _ = finished_run
    source = tmp_path / "in.de"
    source.write_text("Ein Hund läuft.\n\nZwei Männer stehen auf der Straße.\n", encoding="utf-8")
    target = tmp_path / "out.en"
    translate_cli.main([str(out / "model"), "--input", str(source), "--output", str(target), "--beams", "2"])
    lines = target.read_text(encoding="utf-8").split("\n")
    assert len(lines) == 4 and lines[1] == "" and lines[3] == ""


def test_examples_are_the_first_test_translations(finished_run, data):
    out, summary = finished_run
    hypotheses = (out / "model" / "hyp.test2016.en").read_text(encoding="utf-8").split("\n")
    sources = (data / "test2016.de").read_text(encoding="utf-8").split("\n")
    references = (data / "test2016.en").read_text(encoding="utf-8").split("\n")
    assert summary["examples"] == [
        {"source": sources[i], "translation": hypotheses[i], "reference": references[i]} for i in range(5)
    ]


def test_a_run_reads_its_corpus_once_and_loads_its_final_model_once(data, tmp_path, monkeypatch):
    from transformers import AutoModelForSeq2SeqLM

    from train import data as data_module

    calls = []
    for owner, name in ((data_module, "load_parallel"), (AutoModelForSeq2SeqLM, "from_pretrained")):
        original = getattr(owner, name)

        def spy(*args, _original=original, _name=name, **kwargs):
            calls.append((_name, str(args[0])))
            return _original(*args, **kwargs)

        monkeypatch.setattr(owner, name, spy)
    summary = train(
        TrainConfig.from_dict(tiny_settings(data, tmp_path / "out", max_steps=4, eval_steps=4, average_last=1))
    )
    assert summary["test"]["num_sentences"] == 30 and len(summary["examples"]) == 5
    assert calls == [("load_parallel", str(data)), ("from_pretrained", str(tmp_path / "out" / "model"))]


def test_a_misspelt_split_stops_the_run_before_training(data, tmp_path):
    for setting in ("test_split", "eval_split", "train_split"):
        out = tmp_path / setting
        with pytest.raises(ValueError, match=r"no split\(s\) \['tst2016'\]; available: \['test2016', 'train', 'val'\]"):
            train(TrainConfig.from_dict(tiny_settings(data, out, **{setting: "tst2016"})))
        assert not any(out.glob("checkpoint-*")) and not (out / "tokenizer").exists()


def test_existing_run_needs_resume(finished_run):
    out, _ = finished_run
    settings = tiny_settings(Path("unused"), out)
    with pytest.raises(FileExistsError, match="--resume"):
        train(TrainConfig.from_dict(settings))


def test_config_errors_name_the_setting(tmp_path):
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['max_tokenz'\]"):
        TrainConfig.load(None, ["max_tokenz=100"])
    with pytest.raises(ValueError, match="'max_steps' expects int, got 'many'"):
        TrainConfig.load(None, ["max_steps=many"])
    with pytest.raises(ValueError, match="not of the form key=value"):
        TrainConfig.load(None, ["max_steps"])
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        TrainConfig.load(tmp_path / "nope.yaml")
    cfg = TrainConfig.load(REPO_ROOT / "train/configs/multi30k_de_en.yaml", ["model.dropout=0.3", "max_steps=7"])
    assert cfg.model["dropout"] == 0.3 and cfg.max_steps == 7
    with pytest.raises(ValueError, match=r"max_steps must be >= 1, got 0; test_num_beams must be >= 1 or null, got 0"):
        TrainConfig.load(None, ["test_num_beams=0", "max_steps=0"])
    with pytest.raises(ValueError, match=r"preset must be one of \['base', 'big', 'small', 'tiny'\], got 'huge'"):
        TrainConfig.load(None, ["preset=huge"])
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\), got 1.0"):
        TrainConfig.load(None, ["label_smoothing=1.0"])
    with pytest.raises(ValueError, match="max_total_minutes=15 needs max_train_minutes"):
        TrainConfig.load(None, ["max_total_minutes=15"])
    with pytest.raises(ValueError, match="max_total_minutes must be > 0 or null, got 0"):
        TrainConfig.load(None, ["max_total_minutes=0", "max_train_minutes=12"])


def test_a_config_file_extends_another(tmp_path):
    """`extends:` takes another file's settings (a path relative to the file) under the file's own, `model:`
    entries one by one; a missing base or a cycle is an error naming the files."""
    (tmp_path / "base.yaml").write_text(
        "max_steps: 50\nwarmup_steps: 7\nmodel:\n  dropout: 0.3\n  decoder_ffn_dim: 64\n"
    )
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "child.yaml").write_text("extends: ../base.yaml\nmax_steps: 60\nmodel:\n  dropout: 0.1\n")
    cfg = TrainConfig.load(tmp_path / "sub" / "child.yaml", ["model.decoder_ffn_dim=128"])
    assert (cfg.max_steps, cfg.warmup_steps, cfg.model) == (60, 7, {"dropout": 0.1, "decoder_ffn_dim": 128})
    shipped = TrainConfig.load(REPO_ROOT / "train/configs/multi30k_lc_tok_en_de_full.yaml")
    base = TrainConfig.load(REPO_ROOT / "train/configs/multi30k_en_de_full.yaml")
    assert dataclasses.replace(shipped, dataset=base.dataset, output_dir=base.output_dir) == base
    (tmp_path / "orphan.yaml").write_text("extends: gone.yaml\n")
    with pytest.raises(FileNotFoundError, match=r"gone.yaml \(extended by .*orphan.yaml\)"):
        TrainConfig.load(tmp_path / "orphan.yaml")
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ValueError, match="makes a cycle of config files"):
        TrainConfig.load(tmp_path / "a.yaml")


def test_bad_data_stops_before_training(tmp_path):
    data = write_slice(tmp_path / "bad")
    lines = (data / "train.en").read_text().splitlines()
    (data / "train.en").write_text("\n".join(lines[:-5]) + "\n")
    with pytest.raises(ValueError, match="train.de.*400.*train.en.*395|train.en.*395.*train.de.*400"):
        train(TrainConfig.from_dict(tiny_settings(data, tmp_path / "out")))
    assert not (tmp_path / "out" / "checkpoint-4").exists()


def test_last_complete_checkpoint_skips_partial_ones(tmp_path):
    """No trainer_state.json, or one that does not parse: incomplete, renamed out of the way (also
    when an earlier incomplete copy of the same step is there), and the one before is used."""
    for step, state in ((4, "{}"), (8, '{"global_step": 8}'), (12, '{"global_st'), (16, None)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if state is not None:
            (folder / "trainer_state.json").write_text(state)
    (tmp_path / "incomplete-checkpoint-16").mkdir()
    assert last_complete_checkpoint(tmp_path).name == "checkpoint-8"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint-4",
        "checkpoint-8",
        "incomplete-checkpoint-12",
        "incomplete-checkpoint-16",
        "incomplete-checkpoint-16.1",
    ]


def test_fine_tune_from_a_trained_model_keeps_its_tokenizer(data, finished_run, tmp_path):
    reference_out, _ = finished_run
    new_data = write_slice(tmp_path / "other", offset=500)
    out = tmp_path / "ft"
    summary = train(
        TrainConfig.from_dict(
            tiny_settings(
                new_data,
                out,
                init_from=str(reference_out / "model"),
                model={},
                max_steps=4,
                eval_steps=4,
                save_steps=4,
                average_last=1,
                test_split=None,
            )
        )
    )
    assert summary["steps"] == 4
    original = json.loads((reference_out / "model" / "tokenizer.json").read_text())["model"]["vocab"]
    tuned = json.loads((out / "model" / "tokenizer.json").read_text())["model"]["vocab"]
    assert original == tuned
    before = load_file(reference_out / "model" / "model.safetensors")
    after = load_file(out / "model" / "model.safetensors")
    assert not torch.equal(before["model.shared.weight"], after["model.shared.weight"])


def test_fine_tuning_refuses_architecture_overrides_and_applies_regularisation(finished_run, tmp_path):
    """`model.*` with `init_from`: architecture keys are refused by name; dropout reaches the layers."""
    model_dir = finished_run[0] / "model"

    def fine_tune(**model_settings):
        cfg = TrainConfig.from_dict(
            tiny_settings(Path("unused"), tmp_path, init_from=str(model_dir), model=model_settings)
        )
        return build_model(cfg, tokenizer=None)

    with pytest.raises(ValueError, match=r"cannot change \['d_model', 'encoder_layers'\].*may only set \['dropout'"):
        fine_tune(encoder_layers=4, d_model=64, dropout=0.2)
    with pytest.raises(ValueError, match="model.label_smoothing is a training setting"):
        fine_tune(label_smoothing=0.2)
    with pytest.raises(ValueError, match="model.dropuot is not a VanillaTransformerConfig field"):
        TrainConfig.load(None, ["model.dropuot=0.3"])
    with pytest.raises(ValueError, match="model.length_penalty_form is a decoding setting"):
        TrainConfig.load(None, ["model.length_penalty_form=hf"])
    model = fine_tune(dropout=0.3, attention_dropout=0.1)
    residuals = [m for m in model.modules() if type(m).__name__ == "ResidualLayerNorm"]
    assert residuals and {m.dropout for m in residuals} == {0.3}
    assert {m.dropout for m in model.modules() if hasattr(m, "q_proj")} == {0.1}
    assert model.config.dropout == 0.3


def test_fine_tuning_refuses_a_model_whose_config_does_not_match_its_weights(finished_run, tmp_path):
    edited = tmp_path / "edited"
    shutil.copytree(finished_run[0] / "model", edited)
    config = json.loads((edited / "config.json").read_text())
    config["encoder_layers"] += 1
    (edited / "config.json").write_text(json.dumps(config))
    cfg = TrainConfig.from_dict(tiny_settings(Path("unused"), tmp_path / "out", init_from=str(edited), model={}))
    with pytest.raises(ValueError, match=r"weights do not match config.json: \d+ weights missing .*encoder\.layers\.1"):
        build_model(cfg, tokenizer=None)


ONE_THREAD_ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}


def torchrun_command(settings: dict) -> list[str]:
    """`python -m torch.distributed.run` with 2 processes on a free port, training with `settings`."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port"]
    return [*torchrun, str(free_port()), *train_command(settings)[1:]]


@pytest.mark.slow
def test_two_processes_stop_together_at_the_end_of_a_time_budget(data, tmp_path):
    """DDP with `max_train_minutes`: each process measures its own clock, but all stop at the step the first chose
    (`train.time_budget`); a process stopping a step early would leave the other waiting in an all-reduce."""
    settings = tiny_settings(
        data,
        tmp_path / "run",
        max_train_minutes=0.1,
        max_steps=100000,
        eval_steps=100000,
        save_steps=100000,
        average_last=1,
        test_split=None,
    )
    result = subprocess.run(
        torchrun_command(settings), cwd=REPO_ROOT, env=ONE_THREAD_ENV, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert 0 < summary["steps"] < 100000


@pytest.mark.slow
def test_two_processes_match_one_process_with_the_same_global_batch(data, tmp_path):
    """DDP over gloo with 2 CPU processes vs 1 process accumulating the same 2 batches per step:
    the same losses (dropout off, so the runs are comparable)."""
    common = dict(
        max_steps=4,
        eval_steps=100,
        save_steps=4,
        average_last=1,
        test_split=None,
        logging_steps=1,
        model={**TINY_MODEL, "dropout": 0.0},
        warmup_steps=2,
    )
    one = tiny_settings(data, tmp_path / "one", gradient_accumulation_steps=2, **common)
    two = tiny_settings(data, tmp_path / "two", **common)
    env = ONE_THREAD_ENV
    subprocess.run(train_command(one), cwd=REPO_ROOT, env=env, check=True, capture_output=True, timeout=600)
    result = subprocess.run(torchrun_command(two), cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]

    def losses(out):
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        return [r["loss"] for r in rows if "loss" in r and "eval_loss" not in r and r["step"] <= 4]

    assert len(losses(tmp_path / "two")) == 4
    assert losses(tmp_path / "two") == pytest.approx(losses(tmp_path / "one"), rel=1e-4)


def test_time_budget_stops_training_validates_and_saves_there(data, tmp_path, capsys):
    out = tmp_path / "budget"
    summary = train(
        TrainConfig.from_dict(
            tiny_settings(data, out, max_train_minutes=0.0, max_steps=100000, test_split=None, average_last=1)
        )
    )
    assert summary["steps"] == 1
    assert (out / "checkpoint-1" / "trainer_state.json").is_file()
    assert summary["averaged_checkpoints"] == ["checkpoint-1"]
    validations = [
        row for row in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "eval_bleu" in row
    ]
    assert [row["step"] for row in validations] == [1]  # the last validation is of the final weights
    progress = capsys.readouterr().err
    assert "training (time budget)" in progress and "/0 min" in progress and "step 1" in progress
    assert "100000" not in progress  # not the Trainer's step bar with its ETA for max_steps


def test_averaging_takes_the_last_checkpoints_when_an_earlier_validation_scored_best(data, tmp_path, monkeypatch):
    """The Trainer keeps a best checkpoint outside its rotation. Validation BLEU that falls after the first
    validation must not keep that early checkpoint among the ones averaged (a long run averaged its
    checkpoint-3000 with the nine last ones, from steps 4750-6689)."""
    import train.train as train_module

    falling = iter([50.0, 40.0, 30.0, 20.0])

    def falling_bleu(tokenizer, tgt_lang):
        return lambda eval_pred: {"bleu": next(falling), "chrf": 0.0}

    monkeypatch.setattr(train_module, "bleu_metric", falling_bleu)
    out = tmp_path / "falling"
    settings = tiny_settings(
        data, out, max_steps=6, eval_steps=2, save_steps=1, average_last=2, keep_checkpoints=2, test_split=None
    )
    summary = train(TrainConfig.from_dict(settings))
    assert summary["averaged_checkpoints"] == ["checkpoint-5", "checkpoint-6"]
    assert summary["best_validation_bleu"] == 50.0
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-5", "checkpoint-6"]

    # Resumed from a checkpoint whose state names a best checkpoint (as runs with a best metric wrote them):
    # that one rotates out like the others.
    state_file = out / "checkpoint-6" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    best = {"best_model_checkpoint": str(out / "checkpoint-5"), "best_global_step": 5, "best_metric": 50.0}
    state_file.write_text(json.dumps(state | best))
    falling = iter([10.0])
    summary = train(TrainConfig.from_dict(settings | {"max_steps": 8}), resume=True)
    assert summary["averaged_checkpoints"] == ["checkpoint-7", "checkpoint-8"]

    # With early stopping the Trainer tracks the best checkpoint: it is kept in addition to the last ones.
    falling = iter([50.0, 40.0, 30.0, 20.0])
    early = tmp_path / "early"
    settings.update(output_dir=str(early), early_stopping_patience=1, save_steps=2, average_last=1, keep_checkpoints=1)
    summary = train(TrainConfig.from_dict(settings))
    assert summary["steps"] == 4  # stopped at the first validation without improvement
    assert summary["averaged_checkpoints"] == ["checkpoint-4"]
    assert sorted(p.name for p in early.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]


@pytest.mark.parametrize(
    "name",
    [
        "multi30k_de_en.yaml",
        "multi30k_de_en_full.yaml",
        "multi30k_en_de_full.yaml",
        "multi30k_lc_tok_en_de_full.yaml",
        "multi30k_de_en_rnn.yaml",
        "multi30k_de_en_rnn_attention.yaml",
    ],
)
def test_shipped_configs_load(name):
    cfg = TrainConfig.load(REPO_ROOT / "train" / "configs" / name)
    assert cfg.dataset in ("multi30k", "multi30k-lc-tok") and cfg.average_last >= 5
    assert cfg.max_train_minutes is not None and cfg.max_train_minutes <= 105  # the long runs: <= 2 hours in all
    if cfg.early_stopping_patience is not None:  # the Trainer needs saves on evaluation steps
        assert cfg.save_steps % cfg.eval_steps == 0


def test_training_option_pushes_the_final_model(data, tmp_path, hub_repo_id):
    """`push_to_hub: user/name` uploads model/ (weights, tokenizer, code, card) at the end of a run."""
    from huggingface_hub import HfApi, snapshot_download

    out = tmp_path / "pushed"
    train(
        TrainConfig.from_dict(
            tiny_settings(
                data,
                out,
                max_steps=4,
                eval_steps=4,
                save_steps=4,
                average_last=1,
                test_split=None,
                push_to_hub=hub_repo_id,
            )
        )
    )
    files = set(HfApi().list_repo_files(hub_repo_id))
    assert {
        "config.json",
        "model.safetensors",
        "generation_config.json",
        "tokenizer.json",
        "README.md",
        "modeling_vanilla_transformer.py",
        "pipeline_translation.py",
    } <= files
    local = Path(snapshot_download(hub_repo_id, cache_dir=tmp_path / "cache"))
    assert (local / "model.safetensors").read_bytes() == (out / "model" / "model.safetensors").read_bytes()
    assert hub_repo_id in (local / "README.md").read_text()


def test_recipe_writes_only_into_its_run_folder_and_cards_refresh_on_request(data, tmp_path, capsys):
    """`python -m train.recipe` (tiny overrides) leaves the committed cards alone; `--refresh-cards`
    copies the finished run's card, and only then."""
    from train import recipe

    committed = {path: path.read_bytes() for path in recipe.MODEL_CARDS.glob("*.md")}
    out = tmp_path / "runs" / "multi30k-de-en"
    overrides = [f"{key}={json.dumps(value)}" for key, value in tiny_settings(data, out, preset="tiny").items()]
    overrides += ["max_train_minutes=null", "max_steps=4", "eval_steps=4", "save_steps=2", "max_eval_samples=20"]
    overrides += ["test_num_beams=null"]  # the quick setting chooses the length penalty on validation instead
    summary = recipe.main(overrides)
    printed = capsys.readouterr().out
    assert summary["steps"] == 4 and summary["examples"][0]["source"] in printed
    assert [row["length_penalty"] for row in summary["decoding_tuning"]["grid"]] == [0.6, 1.0, 1.4]
    assert summary["test"]["length_penalty"] == summary["decoding_tuning"]["best"]["length_penalty"]
    assert "Decoding chosen on val:" in printed
    assert f"Test results:    {out / 'model' / 'results.test2016.json'}" in printed
    assert {path: path.read_bytes() for path in recipe.MODEL_CARDS.glob("*.md")} == committed

    cards = tmp_path / "cards"
    cards.mkdir()
    written = recipe.refresh_cards(cards, overrides=[f"output_dir={out}"])
    # the full setting's run does not exist
    assert written == [cards / "multi30k-de-en.md", cards / "multi30k-de-en.results.json"]
    assert written[0].read_bytes() == (out / "model" / "README.md").read_bytes()
    results = json.loads(written[1].read_text())
    assert results["test"]["bleu_signature"].startswith("nrefs:1") and results["steps"] == 4
    assert results["precision"] == "fp32" and results["seed"] == 3 and "cpu" in results["machine"]
    with pytest.raises(FileNotFoundError, match="run the recipe first"):
        recipe.refresh_cards(cards, overrides=[f"output_dir={tmp_path / 'nothing'}"])

    # --rewrite-cards: the card built again from what the run saved, with the machine it trained on.
    card = out / "model" / "README.md"
    original = card.read_bytes()
    card.write_text("a stale card\n")
    recipe.refresh_cards(cards, overrides=[f"output_dir={out}"], rewrite=True)
    assert card.read_bytes() == original == (cards / "multi30k-de-en.md").read_bytes()
    summary = json.loads((out / "summary.json").read_text())
    summary["machine"]["cpu"] = "Another CPU"
    (out / "summary.json").write_text(json.dumps(summary))
    recipe.refresh_cards(cards, overrides=[f"output_dir={out}"], rewrite=True)
    assert "Another CPU" in card.read_text() and (cards / "multi30k-de-en.md").read_bytes() == card.read_bytes()


def test_bf16_autocast_trains_with_fp32_weights(data, tmp_path):
    """precision: bf16 (what `auto` picks on CPUs with native bf16) trains through the Trainer's autocast."""
    out = tmp_path / "bf16"
    summary = train(TrainConfig.from_dict(tiny_settings(data, out, precision="bf16", max_steps=4, test_split=None)))
    assert summary["steps"] == 4
    state = load_file(str(out / "model" / "model.safetensors"))
    assert all(t.dtype == torch.float32 for t in state.values())
    assert json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())["log_history"][0]["loss"] > 0


def test_a_total_budget_ends_training_early_enough_for_the_work_after_it(tmp_path, monkeypatch):
    """`max_total_minutes` counted from `$HVT_RUN_STARTED` (as `make recipe` sets it): a run started with 25 s of its
    total budget left stops training once the time left would not hold its validation and its translations after
    training, long before its `max_train_minutes`, and its summary says so. The estimate made as training begins
    stops it before the first validation (step 20) would have measured them."""
    data = write_slice(tmp_path / "data")
    monkeypatch.setenv("HVT_RUN_STARTED", str(time.time() - 10 * 60 + 25))
    settings = tiny_settings(
        data,
        tmp_path / "out",
        max_train_minutes=5,
        max_total_minutes=10,
        max_steps=100000,
        eval_steps=20,
        save_steps=50,
    )
    summary = train(TrainConfig.from_dict(settings))
    assert summary["training_cut_by_max_total_minutes"] and summary["minutes_until_trained"] < 5
    assert summary["steps"] < 20
    assert (tmp_path / "out" / "model" / "model.safetensors").is_file() and summary["test"]["bleu"] >= 0
