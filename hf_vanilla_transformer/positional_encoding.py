"""Positional encodings (paper §3.5) and the learned alternative of Table 3 row (E)."""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_table(num_positions: int, d_model: int, layout: str = "interleaved") -> torch.Tensor:
    """The §3.5 table, shape `(num_positions, d_model)`, computed in float64 then cast to float32.

        PE(pos, 2i)   = sin(pos / 10000^(2i / d_model))
        PE(pos, 2i+1) = cos(pos / 10000^(2i / d_model))

    `layout="interleaved"` stores the values exactly at those indices (the paper's formula).
    `layout="concat"` stores all sines in the first half and all cosines in the second half, the
    layout of tensor2tensor, fairseq and Marian; it is a fixed permutation of the same features.
    """
    if d_model % 2:
        raise ValueError(f"sinusoidal positional encoding needs an even d_model, got {d_model}")
    position = torch.arange(num_positions, dtype=torch.float64)[:, None]  # (P, 1)
    inv_timescale = torch.exp(
        torch.arange(0, d_model, 2, dtype=torch.float64) * (-math.log(10000.0) / d_model)
    )  # (d/2,) = 10000^(-2i/d)
    angles = position * inv_timescale  # (P, d/2)
    table = torch.empty(num_positions, d_model, dtype=torch.float64)
    if layout == "interleaved":
        table[:, 0::2] = torch.sin(angles)
        table[:, 1::2] = torch.cos(angles)
    elif layout == "concat":
        table[:, : d_model // 2] = torch.sin(angles)
        table[:, d_model // 2 :] = torch.cos(angles)
    else:
        raise ValueError(f"sinusoidal layout must be 'interleaved' or 'concat', got {layout!r}")
    return table.float()


class SinusoidalPositionalEncoding(nn.Module):
    """Fixed sinusoidal encodings (§3.5), added to the scaled token embeddings.

    The table is a non-persistent buffer: it is not stored in checkpoints and is recomputed by
    `VanillaTransformerPreTrainedModel._init_weights` (also after `from_pretrained`, which builds
    the model on the meta device).
    """

    def __init__(self, num_positions: int, d_model: int, layout: str = "interleaved"):
        super().__init__()
        self.num_positions, self.d_model, self.layout = num_positions, d_model, layout
        self.register_buffer("table", sinusoidal_table(num_positions, d_model, layout), persistent=False)

    def forward(self, position_ids: torch.LongTensor) -> torch.Tensor:
        """`position_ids` (T,) or (B, T) -> encodings (T, d_model) or (B, T, d_model)."""
        return self.table[position_ids]


class LearnedPositionalEmbedding(nn.Embedding):
    """Learned absolute position embeddings (Table 3 row E: "nearly identical results")."""

    def forward(self, position_ids: torch.LongTensor) -> torch.Tensor:
        return super().forward(position_ids)


def check_positions_fit(past_length: int, seq_len: int, max_positions: int, where: str) -> None:
    """Raise a clear error instead of an opaque index error when a sequence outgrows the table."""
    if past_length + seq_len > max_positions:
        raise ValueError(
            f"{where} sequence length {past_length + seq_len} exceeds max_position_embeddings="
            f"{max_positions}; truncate the input or build the model with a larger max_position_embeddings"
        )
