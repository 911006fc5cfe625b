"""Tests of `train.average_checkpoints` (paper §6.1) on tiny Marian checkpoints and hand-made files."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import MarianConfig, MarianMTModel

from tests._tiny_tokenizer import tiny_tokenizer
from train.average_checkpoints import average_checkpoints, last_checkpoints, main

REPO_ROOT = Path(__file__).resolve().parents[1]
STEPS = (100, 200, 300)


def tiny_marian(seed: int) -> MarianMTModel:
    torch.manual_seed(seed)
    config = MarianConfig(
        vocab_size=300, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=0, tie_word_embeddings=True,
    )  # fmt: skip
    return MarianMTModel(config)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Trainer-like run folder: checkpoints with weights, tokenizer, remote code and trainer state."""
    run = tmp_path_factory.mktemp("run")
    tokenizer = tiny_tokenizer()
    for seed, step in enumerate(STEPS):
        checkpoint = run / f"checkpoint-{step}"
        tiny_marian(seed).save_pretrained(checkpoint)
        tokenizer.save_pretrained(checkpoint)
        (checkpoint / "modeling_custom.py").write_text(f"STEP = {step}\n")
        (checkpoint / "optimizer.pt").write_bytes(b"not copied")
        (checkpoint / "trainer_state.json").write_text("{}")
    (run / "checkpoint-best").mkdir()
    (run / "runs").mkdir()
    return run


def digest(folder: Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.iterdir())}


def test_last_checkpoints_orders_by_step_number(tmp_path: Path) -> None:
    for name in ("checkpoint-9", "checkpoint-10", "checkpoint-100", "checkpoint-x", "other"):
        (tmp_path / name).mkdir()
    (tmp_path / "checkpoint-1000").write_text("a file, not a checkpoint")
    assert [p.name for p in last_checkpoints(tmp_path, 2)] == ["checkpoint-10", "checkpoint-100"]
    assert [p.name for p in last_checkpoints(tmp_path, 3)] == ["checkpoint-9", "checkpoint-10", "checkpoint-100"]
    with pytest.raises(ValueError, match=r"last 4 checkpoints but .* has 3"):
        last_checkpoints(tmp_path, 4)


def test_average_equals_mean_of_state_dicts_and_keeps_ties(run_dir: Path, tmp_path: Path) -> None:
    checkpoints = last_checkpoints(run_dir, 2)
    before = {path.name: digest(path) for path in checkpoints}
    output = average_checkpoints(checkpoints, tmp_path / "averaged")

    states = [load_file(path / "model.safetensors") for path in checkpoints]
    averaged = load_file(output / "model.safetensors")
    assert averaged.keys() == states[0].keys()
    for name, tensor in averaged.items():
        expected = torch.stack([state[name].double() for state in states]).mean(dim=0).to(tensor.dtype)
        torch.testing.assert_close(tensor, expected, rtol=0, atol=0)
    assert not torch.equal(averaged["model.shared.weight"], states[-1]["model.shared.weight"])

    model = MarianMTModel.from_pretrained(output)
    assert model.lm_head.weight is model.model.shared.weight
    torch.testing.assert_close(model.lm_head.weight.detach(), averaged["model.shared.weight"], rtol=0, atol=0)
    assert {path.name: digest(path) for path in checkpoints} == before  # inputs untouched


def test_output_holds_model_tokenizer_and_code_but_no_trainer_state(run_dir: Path, tmp_path: Path) -> None:
    output = average_checkpoints(last_checkpoints(run_dir, 3), tmp_path / "averaged")
    names = {path.name for path in output.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json"} <= names
    assert "tokenizer_config.json" in names
    assert (output / "modeling_custom.py").read_text() == f"STEP = {STEPS[-1]}\n"  # from the last checkpoint
    assert not names & {"optimizer.pt", "trainer_state.json"}
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]  # no staging left behind


def test_non_float_tensors_come_from_last_checkpoint(tmp_path: Path) -> None:
    values = [(1.0, 10, 0.5), (2.0, 20, 0.25), (4.0, 30, 1.0)]
    folders = []
    for i, (weight, count, half) in enumerate(values):
        folder = tmp_path / f"checkpoint-{i}"
        folder.mkdir()
        tensors = {
            "weight": torch.full((2, 3), weight),
            "num_batches_tracked": torch.tensor(count),
            "half": torch.full((4,), half, dtype=torch.float16),
        }
        save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
        folders.append(folder)
    averaged = load_file(average_checkpoints(folders, tmp_path / "out") / "model.safetensors")
    torch.testing.assert_close(averaged["weight"], torch.full((2, 3), 7 / 3), rtol=0, atol=0)
    assert averaged["num_batches_tracked"].item() == 30 and averaged["num_batches_tracked"].dtype == torch.int64
    assert averaged["half"].dtype == torch.float16
    torch.testing.assert_close(averaged["half"], torch.full((4,), 1.75 / 3, dtype=torch.float16), rtol=0, atol=0)


def test_mismatched_checkpoints_are_named(tmp_path: Path) -> None:
    def checkpoint(name: str, tensors: dict[str, torch.Tensor]) -> Path:
        (tmp_path / name).mkdir()
        save_file(tensors, tmp_path / name / "model.safetensors")
        return tmp_path / name

    base = checkpoint("a", {"x": torch.zeros(2), "y": torch.zeros(3)})
    other_keys = checkpoint("b", {"x": torch.zeros(2), "z": torch.zeros(3)})
    other_shape = checkpoint("c", {"x": torch.zeros(2), "y": torch.zeros(4)})
    with pytest.raises(ValueError, match=r"a/model\.safetensors and .*b/model\.safetensors hold different tensors"):
        average_checkpoints([base, other_keys], tmp_path / "out")
    with pytest.raises(ValueError, match=r"tensor 'y' is \(3,\) torch.float32 in .*a/model.safetensors but \(4,\)"):
        average_checkpoints([base, other_shape], tmp_path / "out")
    with pytest.raises(ValueError, match="at least one checkpoint"):
        average_checkpoints([], tmp_path / "out")
    with pytest.raises(ValueError, match=r"no model\.safetensors in"):
        average_checkpoints([tmp_path], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_existing_output_needs_overwrite_and_inputs_are_protected(run_dir: Path, tmp_path: Path) -> None:
    checkpoints = last_checkpoints(run_dir, 2)
    output = tmp_path / "averaged"
    output.mkdir()
    (output / "stale.txt").write_text("old")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        average_checkpoints(checkpoints, output)
    assert (output / "stale.txt").exists()
    average_checkpoints(checkpoints, output, overwrite=True)
    assert (output / "model.safetensors").exists() and not (output / "stale.txt").exists()
    with pytest.raises(ValueError, match="is one of the input checkpoints"):
        average_checkpoints(checkpoints, checkpoints[-1], overwrite=True)


def test_cli_main_and_module_entry_point(run_dir: Path, tmp_path: Path) -> None:
    main([str(run_dir), "--last", "3", "--output", str(tmp_path / "in_process")])
    command = ["-m", "train.average_checkpoints", str(run_dir), "--last", "3", "--output", str(tmp_path / "cli")]
    subprocess.run([sys.executable, *command], cwd=REPO_ROOT, check=True, capture_output=True, text=True)
    expected = load_file(average_checkpoints(last_checkpoints(run_dir, 3), tmp_path / "api") / "model.safetensors")
    for name in ("in_process", "cli"):
        result = load_file(tmp_path / name / "model.safetensors")
        assert all(torch.equal(result[key], expected[key]) for key in expected)
