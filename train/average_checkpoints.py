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
The inputs are only read. The output folder is built in a temporary folder beside it and renamed
into place, so a crash never leaves a half-written model.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

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

_CHECKPOINT_DIR = re.compile(r"checkpoint-(\d+)")


def last_checkpoints(run_dir: str | Path, n: int) -> list[Path]:
    """The last `n` `checkpoint-<step>` folders of a Trainer run, in increasing step order."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    found = sorted(
        (int(match.group(1)), path)
        for path in Path(run_dir).iterdir()
        if path.is_dir() and (match := _CHECKPOINT_DIR.fullmatch(path.name))
    )
    if len(found) < n:
        raise ValueError(f"asked for the last {n} checkpoints but {run_dir} has {len(found)}")
    return [path for _, path in found[-n:]]


def average_checkpoints(checkpoint_dirs: Sequence[str | Path], output_dir: str | Path, overwrite: bool = False) -> Path:
    """Average the `model.safetensors` of `checkpoint_dirs` into a model folder `output_dir`.

    The config, tokenizer and remote-code files (`COPIED_FILES`) come from the last checkpoint.
    Raises `ValueError` when no checkpoint is given, when checkpoints differ in tensor names,
    shapes or dtypes, or when `output_dir` is one of the inputs; `FileExistsError` when
    `output_dir` exists and `overwrite` is false. Returns `output_dir`.
    """
    inputs = [Path(path) for path in checkpoint_dirs]
    output = Path(output_dir)
    if not inputs:
        raise ValueError("average_checkpoints needs at least one checkpoint")
    if any(output.resolve() == path.resolve() for path in inputs):
        raise ValueError(f"output_dir {output} is one of the input checkpoints")
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output} exists; pass overwrite=True to replace it")
    averaged = average_state_dicts([_weights_file(path) for path in inputs])
    with safe_open(_weights_file(inputs[-1]), framework="pt") as last:
        metadata = dict(last.metadata() or {"format": "pt"})
    metadata["averaged_checkpoints"] = ",".join(path.name for path in inputs)

    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        save_file(averaged, staging / WEIGHTS_NAME, metadata=metadata)
        for pattern in COPIED_FILES:
            for source in inputs[-1].glob(pattern):
                shutil.copy2(source, staging / source.name)
        _replace_dir(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output


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
    """Rename `new` to `target`, replacing an existing `target` only once `new` is complete."""
    if not target.exists():
        os.replace(new, target)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
    os.replace(target, retired / target.name)
    os.replace(new, target)
    shutil.rmtree(retired)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Average the last checkpoints of a Trainer run (paper §6.1).")
    parser.add_argument("run_dir", type=Path, help="folder holding the Trainer's checkpoint-<step> folders")
    parser.add_argument("--last", type=int, default=5, help="number of checkpoints to average (paper: 5 base, 20 big)")
    parser.add_argument("--output", type=Path, required=True, help="folder to write the averaged model to")
    parser.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    args = parser.parse_args(argv)
    checkpoints = last_checkpoints(args.run_dir, args.last)
    average_checkpoints(checkpoints, args.output, overwrite=args.overwrite)
    print(f"Averaged {', '.join(path.name for path in checkpoints)} into {args.output}")


if __name__ == "__main__":
    main()
