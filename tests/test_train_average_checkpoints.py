"""Tests of `train.average_checkpoints` (paper §6.1) on tiny Marian checkpoints and hand-made files."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import MarianConfig, MarianMTModel

import train.average_checkpoints as averaging
from tests._tiny_tokenizer import tiny_tokenizer
from train.average_checkpoints import average_checkpoints, is_model_folder, last_checkpoints, main

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


def tree(root: Path) -> dict[str, str]:
    """Every file and folder under `root` (relative path -> sha256, or "dir"): to prove nothing changed."""
    return {
        str(path.relative_to(root)): "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
    }


@pytest.fixture
def fresh_run(run_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the run, inside a project folder that also holds an unrelated file."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "notes.txt").write_text("not part of any run")
    run = shutil.copytree(run_dir, project / "run")
    (run / "tokenizer").mkdir()
    (run / "tokenizer" / "tokenizer.json").write_text("{}")
    (run / "metrics.jsonl").write_text('{"step": 100}\n')
    return run


def averaged_model(folder: Path, run_dir: Path) -> Path:
    """A previous result of averaging, as `train.train.finish` leaves it (model card, test results)."""
    average_checkpoints(last_checkpoints(run_dir, 2), folder)
    (folder / "README.md").write_text("model card")
    (folder / "results.test.json").write_text("{}")
    (folder / "hyp.test.en").write_text("a translation\n")
    return folder


def test_last_checkpoints_orders_by_step_number(tmp_path: Path) -> None:
    for name in ("checkpoint-9", "checkpoint-10", "checkpoint-100", "checkpoint-x", "other"):
        (tmp_path / name).mkdir()
    (tmp_path / "checkpoint-1000").write_text("a file, not a checkpoint")
    assert [p.name for p in last_checkpoints(tmp_path, 2)] == ["checkpoint-10", "checkpoint-100"]
    assert [p.name for p in last_checkpoints(tmp_path, 3)] == ["checkpoint-9", "checkpoint-10", "checkpoint-100"]
    assert last_checkpoints(tmp_path, 3, strict=True) == last_checkpoints(tmp_path, 3)
    with pytest.raises(ValueError, match="must be >= 1, got 0"):
        last_checkpoints(tmp_path, 0)


def test_fewer_checkpoints_than_asked_are_averaged_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for step in (9, 10, 100):
        (tmp_path / f"checkpoint-{step}").mkdir()
    with caplog.at_level(logging.WARNING, logger="train.average_checkpoints"):
        found = last_checkpoints(tmp_path, 5)
    assert [p.name for p in found] == ["checkpoint-9", "checkpoint-10", "checkpoint-100"]
    assert f"asked for the last 5 checkpoints but {tmp_path} has 3: averaging checkpoint-9" in caplog.text
    with pytest.raises(ValueError, match=r"last 5 checkpoints but .* has 3 \(checkpoint-9, .*\); ask for 3"):
        last_checkpoints(tmp_path, 5, strict=True)


def test_end_of_training_with_fewer_checkpoints_gets_a_model_and_can_be_repeated(
    fresh_run: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The probe of issue 9: `average_last: 5` on a run with 3 checkpoints crashed after training, and on --resume.

    This is what `train.train.finish` does: `last_checkpoints(output_dir, average_last)`, then
    `average_checkpoints(..., output_dir / "model", overwrite=True)`, then it adds the card and results.
    """
    model_dir = fresh_run / "model"
    for _ in range(2):  # the second time is `--resume` of a finished run: model/ is replaced
        with caplog.at_level(logging.WARNING, logger="train.average_checkpoints"):
            checkpoints = last_checkpoints(fresh_run, 5)
        assert "asked for the last 5 checkpoints" in caplog.text
        average_checkpoints(checkpoints, model_dir, overwrite=True)
        assert [path.name for path in checkpoints] == [f"checkpoint-{step}" for step in STEPS]
        assert not (model_dir / "README.md").exists()
        (model_dir / "README.md").write_text("model card")
        (model_dir / "results.test.json").write_text("{}")
        (model_dir / "training_args.bin").write_bytes(b"written by Trainer.save_model")
    assert MarianMTModel.from_pretrained(model_dir).config.d_model == 16


def test_no_checkpoints_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "checkpoint-best").mkdir()
    with pytest.raises(FileNotFoundError, match=f"{tmp_path} holds no checkpoint-<step> folder"):
        last_checkpoints(tmp_path, 5)
    with pytest.raises(FileNotFoundError, match="run folder .*missing does not exist"):
        last_checkpoints(tmp_path / "missing", 5)
    (tmp_path / "file").write_text("")
    with pytest.raises(FileNotFoundError, match="run folder .*file is not a folder"):
        last_checkpoints(tmp_path / "file", 5)
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path), "--output", str(tmp_path / "averaged")])
    assert exit_info.value.code == 2
    assert "holds no checkpoint-<step> folder, so there is nothing to average" in capsys.readouterr().err
    assert not (tmp_path / "averaged").exists()


def test_cli_is_strict_about_the_number_of_checkpoints(run_dir: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([str(run_dir), "--output", str(tmp_path / "averaged")])  # --last defaults to 5; the run has 3
    assert exit_info.value.code == 2
    assert f"asked for the last 5 checkpoints but {run_dir} has 3" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


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
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no model\.safetensors in .*empty"):
        average_checkpoints([tmp_path / "empty"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_existing_model_folder_needs_overwrite_and_is_replaced_whole(run_dir: Path, tmp_path: Path) -> None:
    checkpoints = last_checkpoints(run_dir, 3)
    output = averaged_model(tmp_path / "averaged", run_dir)
    before = tree(output)
    with pytest.raises(FileExistsError, match=r"model folder .*averaged exists; pass overwrite=True"):
        average_checkpoints(checkpoints, output)
    assert tree(output) == before
    assert is_model_folder(output)
    average_checkpoints(checkpoints, output, overwrite=True)
    names = {path.name for path in output.iterdir()}
    assert "model.safetensors" in names and not names & {"README.md", "results.test.json", "hyp.test.en"}
    metadata = averaging.safe_open(output / "model.safetensors", framework="pt").metadata()
    assert metadata["averaged_checkpoints"] == "checkpoint-100,checkpoint-200,checkpoint-300"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["averaged"]  # nothing retired or staged is left


def test_output_may_not_be_an_input_contain_one_or_lie_inside_one(run_dir: Path) -> None:
    checkpoints = last_checkpoints(run_dir, 2)
    before = tree(run_dir)
    cases = {
        checkpoints[-1]: "is the input checkpoint",
        checkpoints[0] / ".." / checkpoints[0].name: "is the input checkpoint",  # same folder, other spelling
        run_dir: "contains the input checkpoint",
        run_dir.parent: "contains the input checkpoint",
        checkpoints[0] / "averaged": "is inside the input checkpoint",
    }
    for output, reason in cases.items():
        for overwrite in (False, True):
            with pytest.raises(ValueError, match=f"output folder {output}.* {reason}"):
                average_checkpoints(checkpoints, output, overwrite=overwrite)
    assert tree(run_dir) == before


def test_existing_folders_that_are_not_model_folders_are_never_replaced(run_dir: Path, tmp_path: Path) -> None:
    checkpoints = last_checkpoints(run_dir, 2)

    def folder(name: str, files: dict[str, str], folders: tuple[str, ...] = ()) -> Path:
        path = tmp_path / name
        for sub in folders:
            (path / sub).mkdir(parents=True)
        path.mkdir(exist_ok=True)
        for file, text in files.items():
            (path / file).write_text(text)
        return path

    model = {"config.json": "{}", "model.safetensors": "weights"}
    cases = {
        folder("documents", {"thesis.tex": "years of work"}): "has no config.json",
        folder("config_only", {"config.json": "{}"}): "has no weights",
        folder("other_run", {"metrics.jsonl": ""}, ("checkpoint-7",)): r"holds checkpoints \(checkpoint-7\)",
        folder("project", {**model}, ("data", "runs")): r"holds folders \(data, runs\)",
        folder("checkpoint", {**model, "trainer_state.json": "{}", "optimizer.pt": ""}): (
            r"holds files of a training run or checkpoint \(optimizer.pt, trainer_state.json\)"
        ),
        folder(
            "flat_run", {**model, "summary.json": "{}"}
        ): r"holds files of a training run or checkpoint \(summary.json\)",
    }
    (tmp_path / "a_file.txt").write_text("user data")
    cases[tmp_path / "a_file.txt"] = "is not a folder"
    os.symlink(folder("model", model), tmp_path / "link_to_model")
    cases[tmp_path / "link_to_model"] = "is a symbolic link"
    before = tree(tmp_path)
    for output, reason in cases.items():
        assert not is_model_folder(output)
        for overwrite in (False, True):
            with pytest.raises(FileExistsError, match=f"{output} exists and {reason}.*refusing to replace it"):
                average_checkpoints(checkpoints, output, overwrite=overwrite)
    assert tree(tmp_path) == before


def test_cli_refuses_to_delete_the_run_or_its_parent(fresh_run: Path) -> None:
    """The probe of issue 9: `--output RUN --overwrite` deleted every checkpoint, the tokenizer and the metrics."""
    project = fresh_run.parent
    before = tree(project)
    for output, reason in ((fresh_run, "contains the input checkpoint"), (project, "contains the input checkpoint")):
        command = ["-m", "train.average_checkpoints", str(fresh_run), "--last", "3", "--output", str(output)]
        result = subprocess.run(
            [sys.executable, *command, "--overwrite"], cwd=REPO_ROOT, capture_output=True, text=True, check=False
        )
        assert result.returncode == 2, result.stderr
        assert f"error: output folder {output} {reason}" in result.stderr
        assert "Traceback" not in result.stderr
        assert tree(project) == before


def test_cli_refuses_an_existing_non_model_folder(fresh_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project = fresh_run.parent
    before = tree(project)
    other = project / "other"
    shutil.copytree(fresh_run / "checkpoint-100", other)  # a copy of a checkpoint that is not an input
    with pytest.raises(SystemExit) as exit_info:
        main([str(fresh_run), "--last", "2", "--output", str(other), "--overwrite"])
    assert exit_info.value.code == 2
    assert "files of a training run or checkpoint (optimizer.pt, trainer_state.json)" in capsys.readouterr().err
    assert tree(other) == tree(fresh_run / "checkpoint-100")
    shutil.rmtree(other)
    assert tree(project) == before


def test_replacing_a_model_is_atomic(run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash while the new model is written, or while it is renamed into place, leaves the old model."""
    output = averaged_model(tmp_path / "model", run_dir)
    before = tree(output)
    checkpoints = last_checkpoints(run_dir, 3)

    def crash_half_way(tensors, path, metadata=None):
        Path(path).write_bytes(b"half a file")
        raise OSError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(averaging, "save_file", crash_half_way)
        with pytest.raises(OSError, match="disk full"):
            average_checkpoints(checkpoints, output, overwrite=True)
    assert tree(output) == before

    real_copy = shutil.copy2

    def crash_on_tokenizer(source, target):
        if Path(source).name == "tokenizer.json":
            raise OSError("disk full")
        return real_copy(source, target)

    with monkeypatch.context() as patch:
        patch.setattr(averaging.shutil, "copy2", crash_on_tokenizer)
        with pytest.raises(OSError, match="disk full"):
            average_checkpoints(checkpoints, output, overwrite=True)
    assert tree(output) == before

    real_replace, calls = os.replace, []

    def crash_on_rename_into_place(source, target):
        calls.append(Path(target).name)
        if Path(target) == output and len(calls) == 2:  # the old model is already moved aside
            raise OSError("interrupted")
        return real_replace(source, target)

    with monkeypatch.context() as patch:
        patch.setattr(averaging.os, "replace", crash_on_rename_into_place)
        with pytest.raises(OSError, match="interrupted"):
            average_checkpoints(checkpoints, output, overwrite=True)
    assert calls[:2] == ["model", "model"]
    assert tree(output) == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model"]  # no staging or retired folder left


def test_cli_main_and_module_entry_point(run_dir: Path, tmp_path: Path) -> None:
    main([str(run_dir), "--last", "3", "--output", str(tmp_path / "in_process")])
    command = ["-m", "train.average_checkpoints", str(run_dir), "--last", "3", "--output", str(tmp_path / "cli")]
    subprocess.run([sys.executable, *command], cwd=REPO_ROOT, check=True, capture_output=True, text=True)
    expected = load_file(average_checkpoints(last_checkpoints(run_dir, 3), tmp_path / "api") / "model.safetensors")
    for name in ("in_process", "cli"):
        result = load_file(tmp_path / name / "model.safetensors")
        assert all(torch.equal(result[key], expected[key]) for key in expected)
