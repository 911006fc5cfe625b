"""Checkpoint averaging (Vaswani et al., 2017, §6.1).

"For the base models, we used a single model obtained by averaging the last 5 checkpoints, which
were written at 10-minute intervals. For the big models, we averaged the last 20 checkpoints."

The Trainer writes `checkpoint-<step>` folders; give it `save_strategy="steps"` with a step count
that matches the interval you want. This module averages their `model.safetensors` into a
loadable Hugging Face model folder:

    python -m train.average_checkpoints runs/base --last 5 --output runs/base/averaged

Floating-point tensors are averaged in float64 and cast back to their dtype; other tensors
(integer buffers such as step counters) are copied from the last checkpoint. Tied weights stay
tied, because `save_pretrained` stores a tied tensor once and the averaged file keeps the same keys.

Fewer checkpoints than asked: `last_checkpoints` returns the ones there are with a logged warning
(so a run that wrote 4 of its 5 checkpoints still gets its final model), unless `strict=True`; the
command line is strict, since there the user named the number and can simply run it again. A run
without any checkpoint is an error.

Safety of the output folder. The inputs are only read: the output may not be an input checkpoint,
lie inside one, or contain one. An existing output is replaced only with `overwrite`, and only if
it is a *model folder* (`is_model_folder`): a real folder (not a symbolic link) that holds
`config.json` and a weights file (`WEIGHT_FILES`), no subfolder at all (a Trainer run holds
`checkpoint-*` folders, a project folder holds runs), and none of the files of a Trainer run or
checkpoint (`RUN_FILES`: `trainer_state.json`, `optimizer.pt`, `metrics.jsonl`, ...). Everything
in a replaced model folder goes, as `save_pretrained` would leave it. Any other existing path is
refused with an error naming it and the reason, so a slip such as `--output RUN` or `--output .`
cannot delete a run. The new model is written to a temporary folder beside the output and renamed
into place only once complete, so a crash while writing leaves the old model (or no model) as it
was, never a half-written one.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
COPIED_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer*",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.*",
    "merges.txt",
    "*.spm",
    "*.model",
    "*.py",
)
"""Files copied from the last checkpoint: model and generation config, tokenizer, remote code.
Trainer state (optimizer, scheduler, RNG, trainer_state.json) is left behind."""

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
"""Weight files, one of which (with `config.json`) makes a folder a model folder."""

RUN_FILES = (
    "trainer_state.json",
    "optimizer.pt",
    "optimizer.bin",
    "scheduler.pt",
    "scaler.pt",
    "rng_state*.pth",
    "metrics.jsonl",
    "summary.json",
    "train_config.json",
)
"""Files of a Trainer checkpoint or of a training run (this project's `train.train` writes the last
three): a folder holding one of them is never replaced."""

_CHECKPOINT_DIR = re.compile(r"checkpoint-(\d+)")


def last_checkpoints(run_dir: str | Path, n: int, *, strict: bool = False) -> list[Path]:
    """The last `n` `checkpoint-<step>` folders of a Trainer run, in increasing step order.

    When the run has fewer than `n`, all of them are returned and a warning is logged, or, with
    `strict=True`, `ValueError` is raised. Raises `FileNotFoundError` when `run_dir` is missing,
    is not a folder, or holds no checkpoint at all.
    """
    if n < 1:
        raise ValueError(f"the number of checkpoints to average must be >= 1, got {n}")
    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"run folder {run} {'is not a folder' if run.exists() else 'does not exist'}")
    found = sorted(
        (int(match.group(1)), path)
        for path in run.iterdir()
        if path.is_dir() and (match := _CHECKPOINT_DIR.fullmatch(path.name))
    )
    if not found:
        raise FileNotFoundError(f"{run} holds no checkpoint-<step> folder, so there is nothing to average")
    if len(found) < n:
        names = ", ".join(path.name for _, path in found)
        if strict:
            raise ValueError(
                f"asked for the last {n} checkpoints but {run} has {len(found)} ({names}); "
                f"ask for {len(found)} (--last {len(found)}) to average those"
            )
        logger.warning("asked for the last %d checkpoints but %s has %d: averaging %s", n, run, len(found), names)
    return [path for _, path in found[-n:]]


def average_checkpoints(checkpoint_dirs: Sequence[str | Path], output_dir: str | Path, overwrite: bool = False) -> Path:
    """Average the `model.safetensors` of `checkpoint_dirs` into a model folder `output_dir`.

    The config, tokenizer and remote-code files (`COPIED_FILES`) come from the last checkpoint.
    Raises `ValueError` when no checkpoint is given, when checkpoints differ in tensor names,
    shapes or dtypes, or when `output_dir` is, contains or lies inside an input; `FileExistsError`
    when `output_dir` exists and is not a model folder (see the module docstring), or is one and
    `overwrite` is false. All checks run before anything is written. Returns `output_dir`.
    """
    inputs = [Path(path) for path in checkpoint_dirs]
    output = Path(output_dir)
    if not inputs:
        raise ValueError("average_checkpoints needs at least one checkpoint")
    check_output_dir(output, inputs, overwrite)
    averaged = average_state_dicts([_weights_file(path) for path in inputs])
    with safe_open(_weights_file(inputs[-1]), framework="pt") as last:
        metadata = dict(last.metadata() or {"format": "pt"})
    metadata["averaged_checkpoints"] = ",".join(path.name for path in inputs)
    return _write_checked(averaged, inputs[-1], output, metadata)


def write_model_folder(
    weights: dict[str, torch.Tensor],
    template: str | Path,
    output_dir: str | Path,
    metadata: dict[str, str],
    overwrite: bool = False,
) -> Path:
    """The model folder `output_dir`: `weights` (with `metadata`) as its `model.safetensors`, and the
    `COPIED_FILES` of the checkpoint `template`; the same checks and the same replace-when-complete as
    `average_checkpoints`. Returns `output_dir`."""
    template, output = Path(template), Path(output_dir)
    check_output_dir(output, [template], overwrite)
    return _write_checked(weights, template, output, metadata)


def _write_checked(weights: dict[str, torch.Tensor], template: Path, output: Path, metadata: dict[str, str]) -> Path:
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        save_file(weights, staging / WEIGHTS_NAME, metadata=metadata)
        for pattern in COPIED_FILES:
            for source in template.glob(pattern):
                shutil.copy2(source, staging / source.name)
        _replace_dir(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output


def check_output_dir(output: Path, inputs: Sequence[Path], overwrite: bool) -> None:
    """Raise unless writing a model to `output` leaves the `inputs` and all other data alone."""
    resolved = output.resolve()
    for path in inputs:
        source = path.resolve()
        relation = (
            "is" if resolved == source else "contains" if resolved in source.parents else
            "is inside" if source in resolved.parents else None
        )  # fmt: skip
        if relation:
            raise ValueError(
                f"output folder {output} {relation} the input checkpoint {path}, which is only read; "
                "choose another output folder"
            )
    if not output.exists() and not output.is_symlink():
        return
    reason = not_a_model_folder(output)
    if reason:
        raise FileExistsError(f"{output} exists and {reason}: refusing to replace it; choose another output folder")
    if not overwrite:
        raise FileExistsError(f"model folder {output} exists; pass overwrite=True (--overwrite) to replace it")


def is_model_folder(path: str | Path) -> bool:
    """Whether `path` is a model folder that `average_checkpoints(..., overwrite=True)` may replace."""
    return not_a_model_folder(Path(path)) is None


def not_a_model_folder(path: Path) -> str | None:
    """Why `path` is not a replaceable model folder (see the module docstring), or None if it is one."""
    if path.is_symlink():
        return "is a symbolic link"
    if not path.is_dir():
        return "is not a folder"
    entries = sorted(path.iterdir())
    folders = [entry.name for entry in entries if entry.is_dir()]
    if checkpoints := [name for name in folders if _CHECKPOINT_DIR.fullmatch(name)]:
        return f"holds checkpoints ({_some(checkpoints)})"
    if folders:
        return f"holds folders ({_some(folders)}), so it is not a model folder"
    if run_files := [entry.name for entry in entries if any(entry.match(pattern) for pattern in RUN_FILES)]:
        return f"holds files of a training run or checkpoint ({_some(run_files)})"
    if not (path / "config.json").is_file():
        return "has no config.json, so it is not a model folder"
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        return f"has no weights ({' or '.join(WEIGHT_FILES)}), so it is not a model folder"
    return None


def _some(names: Sequence[str], shown: int = 3) -> str:
    return ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")


def average_state_dicts(weight_files: Sequence[Path]) -> dict[str, torch.Tensor]:
    """Mean of floating-point tensors (computed in float64); other tensors from the last file."""
    reference_file = weight_files[-1]
    reference = load_file(reference_file)
    sums = {name: tensor.double() for name, tensor in reference.items() if tensor.is_floating_point()}
    for weight_file in weight_files[:-1]:
        state = load_file(weight_file)
        _check_compatible(state, weight_file, reference, reference_file)
        for name, total in sums.items():
            total += state[name].double()
    return {
        name: (sums[name] / len(weight_files)).to(tensor.dtype) if name in sums else tensor
        for name, tensor in reference.items()
    }


def _check_compatible(
    state: dict[str, torch.Tensor], path: Path, reference: dict[str, torch.Tensor], reference_path: Path
) -> None:
    missing, extra = sorted(reference.keys() - state.keys()), sorted(state.keys() - reference.keys())
    if missing or extra:
        raise ValueError(
            f"{path} and {reference_path} hold different tensors: missing from the first {missing[:5]}, "
            f"only in the first {extra[:5]}"
        )
    for name, tensor in reference.items():
        if state[name].shape != tensor.shape or state[name].dtype != tensor.dtype:
            raise ValueError(
                f"tensor {name!r} is {tuple(state[name].shape)} {state[name].dtype} in {path} "
                f"but {tuple(tensor.shape)} {tensor.dtype} in {reference_path}"
            )


def _weights_file(checkpoint_dir: Path) -> Path:
    path = checkpoint_dir / WEIGHTS_NAME
    if not path.is_file():
        raise ValueError(
            f"no {WEIGHTS_NAME} in {checkpoint_dir} (sharded or non-safetensors checkpoints are not supported)"
        )
    return path


def _replace_dir(new: Path, target: Path) -> None:
    """Rename the complete folder `new` to `target`, replacing an existing `target`.

    The old `target` is moved aside first and deleted only once `new` is in place; if putting
    `new` in place fails, the old `target` is moved back. (Were the process killed between the two
    renames, the old model would be left whole in `.<name>.old.*/<name>` beside `target`.)
    """
    if not target.exists():
        os.replace(new, target)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
    os.replace(target, retired / target.name)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(retired / target.name, target)
        retired.rmdir()
        raise
    shutil.rmtree(retired)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Average the last checkpoints of a Trainer run (paper §6.1).")
    parser.add_argument("run_dir", type=Path, help="folder holding the Trainer's checkpoint-<step> folders")
    parser.add_argument(
        "--last", type=int, default=5, help="number of checkpoints to average (paper: 5 base, 20 big); the run must "
        "have at least that many"
    )  # fmt: skip
    parser.add_argument("--output", type=Path, required=True, help="model folder to write the averaged model to")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace --output if it is an existing model folder (never a run, "
        "a checkpoint or a folder with other content)"
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:
        checkpoints = last_checkpoints(args.run_dir, args.last, strict=True)
        average_checkpoints(checkpoints, args.output, overwrite=args.overwrite)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    print(f"Averaged {', '.join(path.name for path in checkpoints)} into {args.output}")


if __name__ == "__main__":
    main()
