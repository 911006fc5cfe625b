"""A guard against silently broken decoding during training.

When transformers 5.24 renamed `past_key_values` to `cache`, a model that ignored the new name
decoded every step without its history: the loss fell normally while validation BLEU stayed near 1,
and nothing stopped the run. Cached and uncached greedy decoding must give the same tokens (the cache
only saves work), so this check compares them on a few validation sentences at the first
validation and stops the run with an error naming the transformers release if they differ.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import transformers
from transformers import TrainerCallback

logger = logging.getLogger(__name__)


class BrokenDecodingError(RuntimeError):
    """Cached and uncached decoding disagree: the KV cache does not reach the model."""


@torch.no_grad()
def check_cached_decoding(
    model, input_ids: Sequence[Sequence[int]], pad_token_id: int, max_new_tokens: int = 20
) -> None:
    """Raise `BrokenDecodingError` unless greedy decoding gives the same tokens with and without the cache."""
    width = max(len(ids) for ids in input_ids)
    batch = torch.full((len(input_ids), width), pad_token_id, dtype=torch.long)
    for row, ids in enumerate(input_ids):
        batch[row, : len(ids)] = torch.tensor(ids)
    inputs = {"input_ids": batch.to(model.device), "attention_mask": (batch != pad_token_id).long().to(model.device)}
    was_training = model.training
    model.eval()
    try:
        kwargs = dict(num_beams=1, do_sample=False, max_new_tokens=max_new_tokens)
        cached = model.generate(**inputs, use_cache=True, **kwargs)
        uncached = model.generate(**inputs, use_cache=False, **kwargs)
    finally:
        model.train(was_training)
    if cached.shape != uncached.shape or not torch.equal(cached, uncached):
        rows = [i for i in range(len(input_ids)) if i >= len(cached) or not torch.equal(cached[i], uncached[i])]
        raise BrokenDecodingError(
            f"cached and uncached greedy decoding differ on {len(rows)} of {len(input_ids)} validation sentences "
            f"under transformers {transformers.__version__}: the model does not receive its key/value cache, so "
            "every translation (validation BLEU, the final test) would be wrong. Check that this transformers "
            "release is in the tested range (hf_vanilla_transformer.compat.TESTED_TRANSFORMERS)."
        )


class DecodingCheckCallback(TrainerCallback):
    """Runs `check_cached_decoding` on `input_ids` (a few tokenised validation sources) at the first
    evaluation of a run; the error it raises stops training."""

    def __init__(self, input_ids: Sequence[Sequence[int]], pad_token_id: int):
        self.input_ids = [list(ids) for ids in input_ids]
        self.pad_token_id = pad_token_id
        self.done = False

    def on_evaluate(self, args, state, control, model=None, **kwargs):
        if self.done or model is None or not self.input_ids:
            return
        check_cached_decoding(model, self.input_ids, self.pad_token_id)
        self.done = True
        logger.info("cached and uncached decoding agree on %d validation sentences", len(self.input_ids))
