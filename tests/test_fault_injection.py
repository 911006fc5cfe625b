"""Fault injection: interrupted runs, a full disk and damaged files. Nothing is lost, nothing is silently wrong.

One uninterrupted run of a 1+1-layer model on a slice of Multi30k (12 steps, checkpoints at 4, 8
and 12, one thread) is the reference. Every faulty run must either end with exactly its weights
(bit for bit) after `--resume`, or stop with an error that names the damaged file, leaving every
earlier checkpoint and model as it was:

- `kill -9` while training and while writing a checkpoint (real processes, killed at a chosen
  point, not at a random time);
- a full disk (`OSError(ENOSPC)`) while writing a checkpoint and while writing the final model;
- a corrupt `trainer_state.json`, a `metrics.jsonl` cut short, a corrupt `model.safetensors`, a
  missing `tokenizer.json`, a corrupt or missing `generation_config.json`, and a `config.json` that
  no longer matches its weights.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers import MISSING_DATA, MULTI30K, REPO_ROOT
from tests.train_helpers import (
    one_thread,  # noqa: F401  (autouse fixture: one torch thread)
    tiny_settings,
    train_command,
    write_slice,
)
from train import average_checkpoints as averaging
from train import evaluate_model as evaluate_cli
from train import translate as translate_cli
from train.config import TrainConfig
from train.model_folder import ModelFolderError, load_model
from train.train import last_complete_checkpoint, train

pytestmark = [
    pytest.mark.skipif(not MULTI30K.is_dir(), reason=MISSING_DATA),
    pytest.mark.timeout(300),
]

RUN = dict(max_steps=12, save_steps=4, eval_steps=6, max_eval_samples=20, average_last=2, test_num_beams=1)

# Runs `python -m train.train ARGS` and SIGKILLs itself at the point named by $FAULT:
# "step:N" as training step N+1 begins, "save:N" while checkpoint-N is written (its model and
# optimizer are on disk, its scheduler, RNG states and trainer_state.json are not).
KILLING_DRIVER = textwrap.dedent(
    """
    import os, signal, sys
    import torch, transformers
    from train.train import main

    where, step = os.environ["FAULT"].split(":")
    step = int(step)
    if where == "step":
        training_step = transformers.Trainer.training_step

        def killing_training_step(self, *args, **kwargs):
            if self.state.global_step == step:
                os.kill(os.getpid(), signal.SIGKILL)
            return training_step(self, *args, **kwargs)

        transformers.Trainer.training_step = killing_training_step
    else:
        save = torch.save

        def killing_save(obj, path, *args, **kwargs):
            if f"checkpoint-{step}" in str(path) and str(path).endswith("scheduler.pt"):
                os.kill(os.getpid(), signal.SIGKILL)
            return save(obj, path, *args, **kwargs)

        torch.save = killing_save
    main(sys.argv[1:])
    """
)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_slice(tmp_path_factory.mktemp("m30k"))


def settings(data: Path, out: Path, **overrides) -> dict:
    return tiny_settings(data, out, **{**RUN, **overrides})


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> Path:
    """The uninterrupted run (its output folder)."""
    out = tmp_path_factory.mktemp("reference") / "run"
    train(TrainConfig.from_dict(settings(data, out)))
    return out


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(path / "model.safetensors")


def assert_same_weights(got: Path, expected: Path) -> None:
    got_weights, expected_weights = weights(got), weights(expected)
    assert got_weights.keys() == expected_weights.keys()
    for key, value in expected_weights.items():
        torch.testing.assert_close(got_weights[key], value, rtol=0, atol=0, msg=key)


def copy_run(reference: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(reference, tmp_path / "run"))


def resume(data: Path, out: Path) -> dict:
    return train(TrainConfig.from_dict(settings(data, out)), resume=True)


def killed_run(data: Path, out: Path, fault: str) -> None:
    command = [*train_command(settings(data, out))]
    command[1:3] = ["-c", KILLING_DRIVER]  # instead of -m train.train
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "FAULT": fault, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == -9, result.stderr[-3000:]


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


# ---- interrupted runs ---------------------------------------------------------------------------


def test_reference_run_is_complete(reference):
    assert [p.name for p in sorted(reference.glob("checkpoint-*"))] == ["checkpoint-12", "checkpoint-4", "checkpoint-8"]
    assert (reference / "model" / "model.safetensors").is_file()


def test_kill_during_training_then_resume_gives_the_same_weights(data, reference, tmp_path):
    out = tmp_path / "killed"
    killed_run(data, out, "step:10")
    assert (out / "checkpoint-8" / "trainer_state.json").is_file() and not (out / "checkpoint-12").exists()
    assert_same_weights(out / "checkpoint-8", reference / "checkpoint-8")
    summary = resume(data, out)
    assert summary["steps"] == 12
    assert_same_weights(out / "checkpoint-12", reference / "checkpoint-12")
    assert_same_weights(out / "model", reference / "model")
    assert training_losses(out) == training_losses(reference)  # the log has each step once


def training_losses(run: Path) -> list[tuple[int, float]]:
    """(step, loss) of every training log row of a run; every line must be JSON."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(row["step"], row["loss"]) for row in rows if "loss" in row]


def test_kill_while_writing_a_checkpoint_then_resume_gives_the_same_weights(data, reference, tmp_path):
    out = tmp_path / "killed"
    killed_run(data, out, "save:12")
    assert (out / "checkpoint-12" / "model.safetensors").is_file()
    assert not (out / "checkpoint-12" / "trainer_state.json").exists()
    resume(data, out)
    assert (out / "incomplete-checkpoint-12" / "model.safetensors").is_file()  # kept for inspection
    assert_same_weights(out / "checkpoint-12", reference / "checkpoint-12")
    assert_same_weights(out / "model", reference / "model")


# ---- a full disk --------------------------------------------------------------------------------


def test_full_disk_while_writing_a_checkpoint_keeps_the_earlier_ones_and_resume_works(
    data, reference, tmp_path, monkeypatch
):
    out = tmp_path / "full"
    save = torch.save

    def save_until_the_disk_is_full(obj, path, *args, **kwargs):
        if "checkpoint-12" in str(path) and str(path).endswith("optimizer.pt"):
            no_space()
        return save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_until_the_disk_is_full)
    with pytest.raises(OSError, match="No space left on device"):
        train(TrainConfig.from_dict(settings(data, out)))
    monkeypatch.undo()
    for step in (4, 8):
        assert_same_weights(out / f"checkpoint-{step}", reference / f"checkpoint-{step}")
    assert last_complete_checkpoint(out).name == "checkpoint-8"
    resume(data, out)
    assert_same_weights(out / "checkpoint-12", reference / "checkpoint-12")
    assert_same_weights(out / "model", reference / "model")


def test_full_disk_while_writing_the_final_model_keeps_the_previous_one(data, reference, tmp_path, monkeypatch):
    out = copy_run(reference, tmp_path)
    before = {p.name: p.read_bytes() for p in (out / "model").iterdir()}
    monkeypatch.setattr(averaging, "save_file", no_space)
    with pytest.raises(OSError, match="No space left on device"):
        resume(data, out)
    assert {p.name: p.read_bytes() for p in (out / "model").iterdir()} == before
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")], "temporary folders left behind"
    monkeypatch.undo()
    summary = resume(data, out)  # the run had reached max_steps: it is finished, not trained further
    assert summary["steps"] == 12 and not (out / "checkpoint-13").exists()
    assert_same_weights(out / "model", reference / "model")
    assert training_losses(out) == training_losses(reference)


# ---- damaged files of a run ----------------------------------------------------------------------


def test_corrupt_trainer_state_falls_back_to_the_checkpoint_before(data, reference, tmp_path, caplog):
    out = copy_run(reference, tmp_path)
    state = out / "checkpoint-12" / "trainer_state.json"
    state.write_text(state.read_text()[:100])  # cut short
    shutil.rmtree(out / "model")
    with caplog.at_level(logging.WARNING, logger="train"):
        summary = resume(data, out)
    assert "checkpoint-12 is incomplete (no readable trainer_state.json)" in caplog.text
    assert summary["steps"] == 12
    assert_same_weights(out / "checkpoint-12", reference / "checkpoint-12")
    assert_same_weights(out / "model", reference / "model")


def test_metrics_log_cut_short_is_repaired_on_resume(data, reference, tmp_path, caplog):
    """Killed after step 10 while logging: checkpoint-12 never written, the log's last line cut short."""
    out = copy_run(reference, tmp_path)
    shutil.rmtree(out / "checkpoint-12")
    shutil.rmtree(out / "model")
    metrics = out / "metrics.jsonl"
    until_step_10 = [line for line in metrics.read_text().splitlines() if json.loads(line)["step"] <= 10]
    metrics.write_text("".join(line + "\n" for line in until_step_10) + '{"step": 12, "lo')
    with caplog.at_level(logging.WARNING, logger="train.callbacks"):
        resume(data, out)
    assert f"{metrics}:{len(until_step_10) + 1}: dropping the last line" in caplog.text
    assert training_losses(out) == training_losses(reference)
    assert_same_weights(out / "model", reference / "model")


# ---- damaged model folders -----------------------------------------------------------------------


@pytest.fixture
def model_copy(reference, tmp_path) -> Path:
    return Path(shutil.copytree(reference / "model", tmp_path / "model"))


def translate_file(model_dir: Path, tmp_path: Path) -> Path:
    source = tmp_path / "in.de"
    source.write_text("Ein Hund läuft.\nZwei Männer.\n", encoding="utf-8")
    output = tmp_path / "out.en"
    translate_cli.main([str(model_dir), "--input", str(source), "--output", str(output), "--max-new-tokens", "3"])
    return output


def test_a_correctly_saved_model_reports_no_missing_weights(reference):
    """Tied weights (embeddings and the output projection) are stored once and are not 'missing'."""
    model, tokenizer = load_model(reference / "model")
    assert model.lm_head.weight is model.model.shared.weight and len(tokenizer) <= model.config.vocab_size


@pytest.mark.parametrize("damage", ["truncated", "garbled"])
def test_corrupt_weights_are_an_error_naming_the_file(model_copy, tmp_path, damage):
    weights_file = model_copy / "model.safetensors"
    raw = weights_file.read_bytes()
    weights_file.write_bytes(raw[: len(raw) // 2] if damage == "truncated" else raw[:8] + b"x" * 32 + raw[40:])
    with pytest.raises(ModelFolderError, match=rf"{weights_file} is corrupt or truncated"):
        translate_file(model_copy, tmp_path)
    assert not (tmp_path / "out.en").exists()
    with pytest.raises(ModelFolderError, match="model.safetensors is corrupt"):
        evaluate_cli.main([str(model_copy), "--dataset", str(MULTI30K), "--split", "test2016", "--max-samples", "2"])


def test_missing_tokenizer_is_an_error_naming_the_file(model_copy, tmp_path):
    (model_copy / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match=rf"{model_copy / 'tokenizer.json'} is missing"):
        translate_file(model_copy, tmp_path)


def test_corrupt_tokenizer_or_config_is_an_error_naming_the_file(model_copy, tmp_path):
    for name in ("tokenizer.json", "config.json"):
        damaged = Path(shutil.copytree(model_copy, tmp_path / name))
        (damaged / name).write_text('{"version": "1.0", "trunc', encoding="utf-8")
        with pytest.raises(ModelFolderError, match=rf"{damaged / name} is corrupt or truncated: not valid JSON"):
            load_model(damaged)


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_unreadable_generation_config_falls_back_to_the_papers_decoding(model_copy, tmp_path, damage, caplog):
    """The model package decodes with §6.1's defaults, with a warning; translation still works."""
    path = model_copy / "generation_config.json"
    if damage == "missing":
        path.unlink()
    else:
        path.write_text("{not json", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        output = translate_file(model_copy, tmp_path)
    assert len(output.read_text(encoding="utf-8").split("\n")) == 3
    assert "no readable generation_config.json" in caplog.text
    model, _ = load_model(model_copy)
    settings = translate_cli.decoding_settings(model)
    assert (settings["num_beams"], settings["length_penalty"], settings["max_new_tokens_over_input"]) == (4, 0.6, 50)


def test_config_that_no_longer_matches_the_weights_is_refused(model_copy, tmp_path):
    config = json.loads((model_copy / "config.json").read_text())
    config["encoder_layers"] += 1
    (model_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFolderError, match=r"weights do not match config.json: \d+ weights missing"):
        translate_file(model_copy, tmp_path)
    config["encoder_layers"] -= 1
    config["decoder_ffn_dim"] *= 2
    (model_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFolderError, match=r"weights of another shape than the config says \(model\.decoder"):
        load_model(model_copy)
    config["decoder_ffn_dim"] //= 2
    config["encoder_layers"] -= 1
    (model_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFolderError, match="weights in the file that the config has no place for"):
        load_model(model_copy)
