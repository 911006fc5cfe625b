"""Shared helpers of the training tests (not fixtures): a slice of Multi30k, tiny run settings, and
the command line of a training run in a subprocess."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import ONE_LAYER_SIZES, multi30k_file

TINY_MODEL = {**ONE_LAYER_SIZES, "max_position_embeddings": 128}


def write_slice(folder: Path, sizes=(("train", 400), ("val", 40), ("test2016", 30)), offset: int = 0) -> Path:
    """The first lines (from `offset`) of the Multi30k splits, as a data folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in sizes:
        for lang in ("de", "en"):
            lines = multi30k_file(f"{split}.{lang}").read_text(encoding="utf-8").splitlines()[offset : offset + n]
            (folder / f"{split}.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def tiny_settings(data: Path, out: Path, **overrides) -> dict:
    """TrainConfig settings of a run of a 1+1-layer model on `data` (a `write_slice` folder), one thread."""
    settings = dict(
        dataset=str(data),
        src_lang="de",
        tgt_lang="en",
        train_split="train",
        eval_split="val",
        test_split="test2016",
        vocab_size=400,
        model=dict(TINY_MODEL),
        max_tokens=600,
        warmup_steps=10,
        lr_factor=2.0,
        max_steps=16,
        eval_steps=8,
        save_steps=4,
        average_last=3,
        logging_steps=2,
        test_num_beams=2,
        output_dir=str(out),
        num_threads=1,
        precision="fp32",  # the same arithmetic on every CI machine (auto would pick bf16 where the CPU has it)
        seed=3,
    )
    settings.update(overrides)
    return settings


def train_command(settings: dict, resume: bool = False) -> list[str]:
    """`python -m train.train [--resume] key=value ...` for `settings`."""
    overrides = [f"{k}={json.dumps(v)}" for k, v in settings.items()]
    return [sys.executable, "-m", "train.train", *(["--resume"] if resume else []), *overrides]


@pytest.fixture(autouse=True)
def one_thread():
    """Autouse in the modules that import it: one torch thread, so CPU use stays modest on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
