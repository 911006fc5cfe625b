"""A guard against silently broken decoding during training.

Two bugs have made a run's translations wrong while its loss fell normally, and nothing stopped it:

- transformers 5.24 renamed `past_key_values` to `cache`; a model that ignored the new name decoded every
  step without its history (validation BLEU stayed near 1);
- oneDNN weights packed once and kept from one validation to the next went stale, because torch's fused
  AdamW (transformers' default optimizer) updates weights without bumping their version counter (validation
  BLEU stalled; `hf_vanilla_transformer/onednn.py`).

Both are fast paths of `generate()` (the KV cache, packed weights, the decode-step attention kernel) that
stopped computing what the model computes. So at every validation this check decodes a few validation
sentences greedily with them, then computes the same model's scores plainly, in one forward over each whole
output (no cache, oneDNN off): every generated token must be the one the plain computation ranks first, up
to float rounding (bf16's, under autocast). Otherwise it stops the run with an error naming the transformers release.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import torch
import transformers
from transformers import TrainerCallback

logger = logging.getLogger(__name__)

RELATIVE_TOLERANCE = 2**-5
"""How far below the plain computation's best logit a chosen token's logit may be, relative to that logit's size
(plus 1e-3): a few bf16 steps. Under bf16 autocast (a training run's validation on CPUs with native bf16) logits
of 8-16 are multiples of 1/16, and the cached and the plain computation round differently, so a near-tie may
go either way; a stale weight or a lost cache is off by whole units, and on most tokens."""


class BrokenDecodingError(RuntimeError):
    """`generate()` chose tokens that the model itself, computed plainly, does not rank first."""


@torch.no_grad()
def check_decoding(model, input_ids: Sequence[Sequence[int]], pad_token_id: int, max_new_tokens: int = 20) -> int:
    """Raise `BrokenDecodingError` unless every token of greedy `generate()` (with its cache and fast paths)
    is the top token of the plain computation of the same model, up to `RELATIVE_TOLERANCE`; returns the number of
    tokens checked."""
    width = max(len(ids) for ids in input_ids)
    batch = torch.full((len(input_ids), width), pad_token_id, dtype=torch.long)
    for row, ids in enumerate(input_ids):
        batch[row, : len(ids)] = torch.tensor(ids)
    inputs = {"input_ids": batch.to(model.device), "attention_mask": (batch != pad_token_id).long().to(model.device)}
    was_training = model.training
    model.eval()
    try:
        generated = model.generate(
            **inputs, num_beams=1, do_sample=False, max_new_tokens=max_new_tokens, use_cache=True
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")  # torch, on Intel GPUs
            with torch.backends.mkldnn.flags(enabled=False):
                logits = model(**inputs, decoder_input_ids=generated[:, :-1], use_cache=False).logits.float()
    finally:
        model.train(was_training)
    chosen = generated[:, 1:]
    eos = model.generation_config.eos_token_id
    eos = torch.as_tensor(eos if eos is not None else [], device=chosen.device).reshape(-1)
    finished_before = torch.isin(chosen, eos).long().cumsum(dim=1) - torch.isin(chosen, eos).long()
    checked = finished_before == 0  # the tokens up to and including each row's end of sentence
    best = logits.max(dim=-1).values
    shortfall = best - logits.gather(-1, chosen.unsqueeze(-1)).squeeze(-1)
    wrong = (shortfall > 1e-3 + RELATIVE_TOLERANCE * best.abs()) & checked
    if wrong.any():
        rows = sorted({int(row) for row in wrong.nonzero()[:, 0]})
        raise BrokenDecodingError(
            f"greedy generate() chose {int(wrong.sum())} of {int(checked.sum())} tokens (in {len(rows)} of "
            f"{len(input_ids)} validation sentences) that the model, computed plainly (no cache, oneDNN off), does "
            f"not rank first (by up to {float(shortfall[wrong].max()):.3g}) under transformers "
            f"{transformers.__version__}: a decoding fast path (the key/value cache, packed weights, the decode-step "
            "attention) is broken, so every translation (validation BLEU, the final test) would be wrong. Check "
            "that this transformers release is in the tested range (hf_vanilla_transformer.compat.TESTED_TRANSFORMERS)."
        )
    return int(checked.sum())


class DecodingCheckCallback(TrainerCallback):
    """Runs `check_decoding` on `input_ids` (a few tokenised validation sources) at every evaluation of a run
    (the weights change between them); the error it raises stops training."""

    def __init__(self, input_ids: Sequence[Sequence[int]], pad_token_id: int):
        self.input_ids = [list(ids) for ids in input_ids]
        self.pad_token_id = pad_token_id
        self.checks = 0

    def on_evaluate(self, args, state, control, model=None, **kwargs):
        if model is None or not self.input_ids:
            return
        tokens = check_decoding(model, self.input_ids, self.pad_token_id)
        if self.checks == 0:
            logger.info("decoding checked against the plain computation on %d validation tokens", tokens)
        self.checks += 1
