"""Teacher-forcing inputs and the label-smoothed loss, shared by the Transformer and the recurrent models.

Their own small file, so that a saved recurrent model ships only its own code: remote code copies a modeling file
and everything it imports relatively, and importing them from the Transformer's modeling file would copy the whole
Transformer along.
"""

from __future__ import annotations

import torch
from torch import nn


def shift_tokens_right(labels: torch.Tensor, pad_token_id: int, decoder_start_token_id: int) -> torch.Tensor:
    """Decoder inputs for teacher forcing: `<s> y_1 ... y_{n-1}` from labels `y_1 ... y_n` (B, T) (§3.1, "the
    output embeddings are offset by one position"). Ignored labels (-100) become padding."""
    shifted = labels.new_zeros(labels.shape)
    shifted[:, 1:] = labels[:, :-1].clone()
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill_(shifted == -100, pad_token_id)


def loss_positions(labels: torch.Tensor, pad_token_id: int | None) -> torch.Tensor:
    """labels (B, T) -> (B, T) bool, True where `label_smoothed_nll_loss` counts the label (not -100, not padding)."""
    counted = labels != -100
    return counted & (labels != pad_token_id) if pad_token_id is not None else counted


def label_smoothed_nll_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    epsilon: float,
    pad_token_id: int | None,
    num_items_in_batch: int | torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy against the label-smoothed targets (Szegedy et al. 2016; Vaswani et al. §5.4).

    logits (B, T, V), labels (B, T), or packed rows (N, V), (N); positions labelled -100 or `pad_token_id` are
    ignored. The summed loss is divided by `num_items_in_batch` when the Trainer gives it, else by the number of
    target tokens in the batch.
    """
    if not 0.0 <= epsilon < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {epsilon}")
    labels = labels.to(logits.device)
    labels = labels.masked_fill(~loss_positions(labels, pad_token_id), -100)
    total = nn.functional.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(),
        labels.reshape(-1),
        ignore_index=-100,
        reduction="sum",
        label_smoothing=epsilon,
    )
    if num_items_in_batch is None:
        num_items_in_batch = (labels != -100).sum().clamp(min=1)
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch
