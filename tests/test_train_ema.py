"""train/ema.py: the exponential moving average of the weights, against its recurrence computed here in float64;
its checkpoints, resumed bit for bit after a kill; the choice between it and the checkpoint average."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from tests.helpers import MISSING_DATA, MULTI30K, REPO_ROOT
from tests.test_fault_injection import KILLING_DRIVER
from tests.train_helpers import (
    one_thread,  # noqa: F401  (autouse fixture: one torch thread)
    tiny_settings,
    train_command,
    write_slice,
)
from train.config import TrainConfig
from train.ema import EMA_WEIGHTS, EmaCallback, choose_final_weights, decay_at
from train.model_card import final_weights_text
from train.train import train

needs_data = pytest.mark.skipif(not MULTI30K.is_dir(), reason=MISSING_DATA)

RUN = dict(max_steps=12, save_steps=4, eval_steps=6, max_eval_samples=20, average_last=2, test_num_beams=1)
DECAY = 0.9


class Tied(torch.nn.Module):
    """Two names for one weight, as the Transformer's shared embedding and output layer (§3.4)."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(5, 3)
        self.out = torch.nn.Linear(3, 5, bias=False)
        self.out.weight = self.embed.weight
        self.scale = torch.nn.Linear(3, 3)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))


def test_decay_rises_to_its_value_over_the_first_updates():
    assert [decay_at(0.999, t) for t in (0, 1, 8)] == [0.1, 2 / 11, 0.5]
    assert decay_at(0.999, 100_000) == 0.999
    assert decay_at(0.5, 8) == 0.5


def test_callback_follows_the_recurrence_and_saves_what_the_checkpoint_names(tmp_path):
    torch.manual_seed(0)
    model = Tied()
    callback = EmaCallback(0.8)
    args, state = SimpleNamespace(output_dir=str(tmp_path)), SimpleNamespace(global_step=0, is_world_process_zero=True)
    callback.on_train_begin(args, state, None, model=model)
    expected = {name: p.detach().double().clone() for name, p in model.named_parameters()}
    for step in range(1, 7):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        state.global_step = step
        callback.on_step_end(args, state, None, model=model)
        d = min(0.8, step / (9 + step))  # t = step - 1 updates before this one
        for name, p in model.named_parameters():
            expected[name] = d * expected[name] + (1 - d) * p.detach().double()
    checkpoint = tmp_path / "checkpoint-6"
    checkpoint.mkdir()
    # As save_pretrained stores a tied weight: once, under one of its names.
    saved = {k: v.clone() for k, v in model.state_dict().items() if k != "out.weight"}
    save_file(saved, checkpoint / "model.safetensors", metadata={"format": "pt"})
    callback.on_save(args, state, None, model=model)

    ema = load_file(checkpoint / EMA_WEIGHTS)
    assert ema.keys() == saved.keys()
    for name in ("embed.weight", "scale.weight", "scale.bias"):
        torch.testing.assert_close(ema[name].double(), expected[name], rtol=0, atol=1e-6, msg=name)
        assert not torch.equal(ema[name], saved[name])
    assert torch.equal(ema["steps"], saved["steps"])  # buffers as the checkpoint has them
    with safe_open(checkpoint / EMA_WEIGHTS, framework="pt") as f:
        assert f.metadata()["ema_step"] == "6" and f.metadata()["ema_decay"] == "0.8"

    resumed = EmaCallback(0.8)
    resumed.on_train_begin(args, state, None, model=model)  # global_step 6: continues from the saved EMA
    for name, shadow in zip(resumed.names, resumed.shadow, strict=True):
        torch.testing.assert_close(shadow, ema[name], rtol=0, atol=0)


def test_an_ema_of_another_model_is_refused(tmp_path):
    model = Tied()
    (tmp_path / "checkpoint-3").mkdir()
    save_file({"embed.weight": torch.zeros(4, 3)}, tmp_path / "checkpoint-3" / EMA_WEIGHTS)
    state = SimpleNamespace(global_step=3, is_world_process_zero=True)
    with pytest.raises(ValueError, match="embed.weight is \\(4, 3\\)"):
        EmaCallback(0.9).on_train_begin(SimpleNamespace(output_dir=str(tmp_path)), state, None, model=model)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"ema_decay": 1.0}, "ema_decay must be in"),
        ({"final_weights": "ema"}, "needs ema_decay"),
        ({"final_weights": "best", "ema_decay": 0.9}, "final_weights must be one of"),
    ],
)
def test_weights_settings_are_checked(overrides, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig.from_dict(overrides)


# ---- runs -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_slice(tmp_path_factory.mktemp("m30k"))


def settings(data: Path, out: Path, **overrides) -> dict:
    return tiny_settings(data, out, **{**RUN, "ema_decay": DECAY, "final_weights": "validation", **overrides})


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("ema") / "run"
    return out, train(TrainConfig.from_dict(settings(data, out)))


def metadata(folder: Path) -> dict[str, str]:
    with safe_open(folder / "model.safetensors", framework="pt") as f:
        return f.metadata()


@needs_data
def test_run_keeps_the_ema_in_its_checkpoints_and_chooses_on_validation(run):
    out, summary = run
    for step in (4, 8, 12):
        checkpoint = out / f"checkpoint-{step}"
        ema, weights = load_file(checkpoint / EMA_WEIGHTS), load_file(checkpoint / "model.safetensors")
        assert ema.keys() == weights.keys()
        assert not torch.equal(ema["model.shared.weight"], weights["model.shared.weight"])
    choice = summary["final_weights"]
    scores = choice["validation_bleu"]
    assert choice["chosen"] == ("ema" if scores["ema"] > scores["average"] else "average")
    other = out / ("model-average" if choice["chosen"] == "ema" else "model-ema")
    assert ("ema_decay" in metadata(out / "model")) == (choice["chosen"] == "ema")
    assert ("ema_decay" in metadata(other)) == (choice["chosen"] != "ema")
    for name in ("average", "ema"):  # each scored on the whole validation slice with the model's decoding
        results = json.loads((out / "final-weights" / name / "beam1" / "results.val.json").read_text())
        assert results["num_sentences"] == 40 and results["bleu"] == scores[name]
    card = (out / "model" / "README.md").read_text()
    assert "exponential moving average of the weights (decay 0.9)" in card and "chosen on val over" in card


@needs_data
def test_the_ema_model_holds_the_final_checkpoints_ema(run, tmp_path):
    out, _ = run
    copy = Path(shutil.copytree(out, tmp_path / "run"))
    choice = choose_final_weights("ema", copy, 12)
    assert choice == {"setting": "ema", "chosen": "ema"}
    ema = load_file(copy / "checkpoint-12" / EMA_WEIGHTS)
    model = load_file(copy / "model" / "model.safetensors")
    assert ema.keys() == model.keys() and all(torch.equal(model[k], ema[k]) for k in ema)
    assert metadata(copy / "model")["ema_step"] == "12"
    # Finishing again keeps one folder of each: the EMA written anew, the earlier average replaced.
    choose_final_weights("ema", copy, 12)
    assert sorted(p.name for p in copy.glob("model*")) == ["model", "model-average"]


@needs_data
def test_kill_then_resume_gives_the_same_ema(data, run, tmp_path):
    reference, _ = run
    out = tmp_path / "killed"
    command = train_command(settings(data, out))
    command[1:3] = ["-c", KILLING_DRIVER]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "FAULT": "step:10", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == -9, result.stderr[-3000:]
    assert (out / "checkpoint-8" / EMA_WEIGHTS).is_file() and not (out / "checkpoint-12").exists()
    train(TrainConfig.from_dict(settings(data, out)), resume=True)
    got, expected = load_file(out / "checkpoint-12" / EMA_WEIGHTS), load_file(reference / "checkpoint-12" / EMA_WEIGHTS)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=0, msg=key)


def test_card_says_which_weights_and_why():
    cfg = TrainConfig.from_dict({"ema_decay": 0.998, "final_weights": "validation", "eval_split": "validation"})
    text = final_weights_text(cfg, {"chosen": "average", "validation_bleu": {"average": 38.2, "ema": 37.9}})
    assert text == (
        "the last 5 checkpoints averaged (§6.1); chosen on validation over an exponential moving average of the "
        "weights (decay 0.998): BLEU 38.20, 37.90"
    )
