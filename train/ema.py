"""An exponential moving average (EMA) of the weights, beside §6.1's checkpoint averaging.

Not in the paper. §6.1 averages the last checkpoints ("a single model obtained by averaging the last 5
checkpoints"); Polyak averaging keeps instead one running average of the weights, updated after every
optimizer step (Polyak & Juditsky, 1992; the EMA form as in TensorFlow's `ExponentialMovingAverage`):

    ema <- d_t * ema + (1 - d_t) * weights,    d_t = min(decay, (1 + t) / (10 + t))

where t is the number of updates so far. A decay d averages over about 1 / (1 - d) of the last steps: 0.998
about 500 (the quick recipe's last 5 checkpoints, one every 100 steps, span 500). The warm-up of d_t lets the
first updates, from random weights, fade within a few steps instead of weighing (decay)^t for thousands.

With `ema_decay` set (`train.config.TrainConfig`) a run keeps the average in fp32 beside the model
(`EmaCallback`), writes it into every checkpoint as `ema.safetensors` (the tensor names of the checkpoint's
`model.safetensors`, so a resumed run continues the same average), and after training writes it as a model
folder, `model-ema/` (`write_ema_model`). `final_weights` (`choose_final_weights`) then says which weights
become the run's `model/`: the checkpoint average (`average`, the default), the EMA (`ema`), or whichever of
the two scores higher BLEU on the validation split with the model's decoding (`validation`); the other stays
beside it, as `model-ema/` or `model-average/`. The model folder's `model.safetensors` says which it holds
(its metadata: `averaged_checkpoints`, or `ema_decay` and `ema_step`).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from train.average_checkpoints import WEIGHTS_NAME, is_model_folder, write_model_folder
from train.config import FINAL_WEIGHTS

logger = logging.getLogger(__name__)

EMA_WEIGHTS = "ema.safetensors"
"""The EMA's file in each checkpoint folder, beside the model's `model.safetensors`."""
EMA_MODEL = "model-ema"
AVERAGE_MODEL = "model-average"


def decay_at(decay: float, updates: int) -> float:
    """d_t: `decay`, lowered for the first updates to (1 + t) / (10 + t)."""
    return min(decay, (1 + updates) / (10 + updates))


class EmaCallback(TrainerCallback):
    """Keeps the EMA of the model's trainable floating-point parameters in fp32, updates it after every
    optimizer step, and saves it into each checkpoint the Trainer writes (`EMA_WEIGHTS`, process 0).

    A run resumed from a checkpoint continues from that checkpoint's EMA. Were the file missing (a run killed
    in the moment between the Trainer's checkpoint and this file), the average starts again from the
    checkpoint's weights, with a warning."""

    def __init__(self, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.names: list[str] = []
        self.params: list[torch.Tensor] = []
        self.shadow: list[torch.Tensor] = []

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        named = [(name, p) for name, p in model.named_parameters() if p.requires_grad and p.is_floating_point()]
        self.names = [name for name, _ in named]
        self.params = [p for _, p in named]
        self.shadow = [p.detach().float().clone() for p in self.params]
        if state.global_step > 0:
            saved = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}" / EMA_WEIGHTS
            if saved.is_file():
                self._load(saved, model)
            else:
                logger.warning("%s is missing: the EMA starts again from the checkpoint's weights", saved)

    def on_step_end(self, args, state, control, **kwargs):
        # state.global_step counts this update already: t = global_step - 1 updates came before it.
        weight = 1.0 - decay_at(self.decay, state.global_step - 1)
        with torch.no_grad():
            for shadow, param in zip(self.shadow, self.params, strict=True):
                shadow.lerp_(param.detach().float(), weight)

    def on_save(self, args, state, control, model=None, **kwargs):
        if state.is_world_process_zero:
            checkpoint = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            self.save(checkpoint, model, state.global_step)

    def save(self, checkpoint: Path, model: torch.nn.Module, step: int) -> Path:
        """Write the EMA into `checkpoint` as `EMA_WEIGHTS`, with the names, dtypes and other tensors
        (buffers) of its `model.safetensors`; written to a temporary file, then renamed."""
        by_storage = {p.data_ptr(): s for p, s in zip(self.params, self.shadow, strict=True)}
        model_state = model.state_dict()
        tensors = {}
        with safe_open(checkpoint / WEIGHTS_NAME, framework="pt") as saved:
            for name in saved.keys():  # noqa: SIM118 (safe_open has keys(), not iteration)
                tensor = saved.get_tensor(name)
                live = model_state.get(name)
                shadow = by_storage.get(live.data_ptr()) if live is not None else None
                tensors[name] = shadow.to(tensor.dtype).clone() if shadow is not None else tensor
        path = checkpoint / EMA_WEIGHTS
        partial = path.with_name(f".{EMA_WEIGHTS}.partial")
        save_file(tensors, partial, metadata={"format": "pt", "ema_decay": str(self.decay), "ema_step": str(step)})
        os.replace(partial, path)
        return path

    def _load(self, path: Path, model: torch.nn.Module) -> None:
        """Continue from the EMA saved in `path`, matched to the parameters by the tensors the names share (a
        tied parameter is saved under one of its names)."""
        by_storage = {p.data_ptr(): i for i, p in enumerate(self.params)}
        model_state = model.state_dict()
        loaded = set()
        for name, tensor in load_file(path).items():
            live = model_state.get(name)
            index = by_storage.get(live.data_ptr()) if live is not None else None
            if index is None:
                continue  # a buffer
            if tensor.shape != self.shadow[index].shape:
                raise ValueError(f"{path}: {name} is {tuple(tensor.shape)}, the model's {tuple(live.shape)}")
            self.shadow[index].copy_(tensor)
            loaded.add(index)
        missing = [self.names[i] for i in range(len(self.names)) if i not in loaded]
        if missing:
            raise ValueError(f"{path} holds no EMA of {missing[:5]}: it is not this model's EMA")


def write_ema_model(checkpoint: Path, output: Path) -> Path:
    """The model folder `output` with the EMA weights of `checkpoint` (its `EMA_WEIGHTS`) and the config,
    tokenizer and code of the checkpoint; replaced whole if it is a model folder already."""
    source = checkpoint / EMA_WEIGHTS
    if not source.is_file():
        raise FileNotFoundError(f"{source} is missing: {checkpoint} was not written with ema_decay set")
    with safe_open(source, framework="pt") as saved:
        metadata = dict(saved.metadata() or {"format": "pt"})
    return write_model_folder(load_file(source), checkpoint, output, metadata, overwrite=True)


def choose_final_weights(
    final_weights: str, output_dir: Path, final_step: int, score_on_validation=None
) -> dict[str, Any]:
    """Write `model-ema/` from the final checkpoint and make the weights `final_weights` names the run's `model/`
    (which holds the checkpoint average when this is called). `score_on_validation(model_dir, "average" | "ema") ->
    BLEU` scores each candidate for `final_weights="validation"` (ties keep the average). Returns what was chosen,
    and the scores."""
    if final_weights not in FINAL_WEIGHTS:
        raise ValueError(f"final_weights must be one of {FINAL_WEIGHTS}, got {final_weights!r}")
    model_dir, ema_dir = output_dir / "model", output_dir / EMA_MODEL
    write_ema_model(output_dir / f"{PREFIX_CHECKPOINT_DIR}-{final_step}", ema_dir)
    choice: dict[str, Any] = {"setting": final_weights}
    chosen = "ema" if final_weights == "ema" else "average"
    if final_weights == "validation":
        if score_on_validation is None:
            raise ValueError("final_weights='validation' needs score_on_validation")
        scores = {"average": score_on_validation(model_dir, "average"), "ema": score_on_validation(ema_dir, "ema")}
        choice["validation_bleu"] = scores
        chosen = "ema" if scores["ema"] > scores["average"] else "average"
    if chosen == "ema":
        average_dir = output_dir / AVERAGE_MODEL
        if average_dir.exists():  # an earlier finish of this run: only ever a model folder of ours
            if not is_model_folder(average_dir):
                raise FileExistsError(f"{average_dir} exists and is not a model folder: not replacing it")
            shutil.rmtree(average_dir)
        os.replace(model_dir, average_dir)
        os.replace(ema_dir, model_dir)
    choice["chosen"] = chosen
    logger.info("final weights (%s): %s%s", final_weights, chosen, f", validation BLEU {choice.get('validation_bleu')}")
    return choice
