"""Loading a trained model folder (or Hub repo) for the command-line tools, checked.

`transformers`' `from_pretrained` is lenient where these tools must not be: a `config.json` that no
longer matches its weights (say `encoder_layers: 4` over weights of 3 layers) loads with freshly
initialised layers, or silently drops weights, and only logs a table; a corrupt `model.safetensors`,
`config.json` or `tokenizer.json`, or a missing `tokenizer.json`, fails with a message that names no
file. Here every such problem is an error naming the file, and the weights must fit the config
exactly: no missing, unexpected or reshaped tensors (a tied weight stored once is not missing).

A missing or unreadable `generation_config.json` is not an error: the model package falls back to
the paper's decoding with a warning.

`translate`, `evaluate_model`, the training's `init_from` and the recipe all load through here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
"""Weight files `from_pretrained` reads, in its order of preference."""


class ModelFolderError(ValueError):
    """A model folder is incomplete, corrupt, or its weights do not match its config."""


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
"""The weight types the command-line tools load a model in (`--dtype`); float32 is the default."""


def load_model(model_dir: str | Path, dtype: str = "float32") -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model of `model_dir` (a folder written by training, or a Hub repo id) in eval mode, with
    its tokenizer; both checked (see the module docstring). `dtype` (a key of `DTYPES`) is the type of
    its weights, as `from_pretrained(dtype=...)` loads them: `"bfloat16"` translates faster on CPUs with
    native bf16 (`benchmarks/README.md`, with its effect on BLEU)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    model = load_checked_model(model_dir, dtype=DTYPES[dtype]).eval()
    tokenizer = load_tokenizer(model_dir)
    if len(tokenizer) > model.config.vocab_size:
        raise ModelFolderError(
            f"{model_dir}: the tokenizer has {len(tokenizer)} tokens but the model's vocabulary "
            f"(config.json vocab_size) only {model.config.vocab_size}; they do not belong together"
        )
    return model, tokenizer


def load_checked_model(model_dir: str | Path, **from_pretrained_kwargs: Any) -> PreTrainedModel:
    """`AutoModelForSeq2SeqLM.from_pretrained(model_dir, **from_pretrained_kwargs)` (config overrides, `dtype`),
    refusing a folder whose files are missing or corrupt or whose weights do not match its config."""
    folder = Path(model_dir)
    if folder.exists():
        _check_folder(folder)
    model, info = AutoModelForSeq2SeqLM.from_pretrained(
        str(model_dir),
        trust_remote_code=True,
        output_loading_info=True,
        ignore_mismatched_sizes=True,  # reported below as an error, with the tensors' names
        **from_pretrained_kwargs,
    )
    problems = [
        f"{len(info[key])} {what} ({_some(info[key])})"
        for key, what in (
            ("missing_keys", "weights missing from the weights file"),
            ("unexpected_keys", "weights in the file that the config has no place for"),
            ("mismatched_keys", "weights of another shape than the config says"),
        )
        if info.get(key)
    ]
    if problems:
        raise ModelFolderError(
            f"{model_dir}: the weights do not match config.json: {'; '.join(problems)}. Was config.json edited, "
            "or does it come from another model? Refusing to use a model with missing or ignored weights."
        )
    return model


def load_tokenizer(model_dir: str | Path) -> PreTrainedTokenizerBase:
    """The tokenizer saved with a model (`tokenizer.json`), with errors that name the file."""
    folder = Path(model_dir)
    if folder.exists():
        path = folder / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: the model folder has no tokenizer")
        _check_json(path)
    try:
        return AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=True)
    except (OSError, ValueError) as error:
        raise ModelFolderError(f"{model_dir}: cannot load the tokenizer ({error})") from error


def _check_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a model folder")
    config = folder / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"{folder} is not a model folder: no config.json")
    _check_json(config)
    weights = next((folder / name for name in WEIGHT_FILES if (folder / name).is_file()), None)
    if weights is None:
        raise FileNotFoundError(f"{folder} has no weights file (one of {', '.join(WEIGHT_FILES)})")
    if weights.name == "model.safetensors":
        try:
            with safe_open(str(weights), framework="pt") as handle:
                handle.keys()
        except Exception as error:  # safetensors raises its own SafetensorError, or OSError
            raise ModelFolderError(f"{weights} is corrupt or truncated ({error})") from error


def _check_json(path: Path) -> None:
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFolderError(f"{path} is corrupt or truncated: not valid JSON ({error})") from error


def _some(names: Any, shown: int = 3) -> str:
    names = sorted(str(name) if not isinstance(name, tuple) else str(name[0]) for name in names)
    return ", ".join(names[:shown]) + (f", ... ({len(names) - shown} more)" if len(names) > shown else "")
