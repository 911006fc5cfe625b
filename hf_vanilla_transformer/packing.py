"""Position-wise layers on real tokens only: no compute on padding (`config.skip_padding`).

Every layer of the Transformer except attention acts on each position separately and identically: the
projections W^Q, W^K, W^V, W^O (§3.2.2), the feed-forward network (§3.3), the residual connections and layer
normalisation (§3.1), and the pre-softmax linear layer (§3.4). A batch padded to its longest sentence holds
positions whose results no used output depends on:

- source padding: attention masks it out as a key, in the encoder and in the encoder-decoder attention;
- target positions after a row's last labelled one: the causal mask (§3.2.3) hides every later position from
  every earlier one, and the loss does not read them.

So those layers can run on the N kept positions alone, gathered into one (N, d_model) matrix: `Packing.pack`.
Attention, which mixes positions, scatters its packed queries, keys and values back to (B, T, ...) with zeros
at the left-out positions (`Packing.unpack`), runs any attention kernel with the usual masks, and gathers its
output again before W^O. Every kept position sees exactly the numbers it would see without packing, so the
loss, its gradients and the outputs at kept positions are the same (up to float rounding); outputs at
left-out positions are zeros.
"""

from __future__ import annotations

import torch


class Packing:
    """The kept positions of a (B, T) batch, and the moves between the padded and the packed layout.

    `keep` (B, T) is True (or 1) at the positions to compute; `index` (N,) numbers them in the flattened
    (B * T) batch, row by row.
    """

    def __init__(self, keep: torch.Tensor):
        self.shape = tuple(keep.shape)
        self.index = keep.reshape(-1).nonzero().squeeze(1)

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, ...) -> its kept positions, (N, ...)."""
        if tuple(x.shape[:2]) != self.shape:
            raise ValueError(f"Packing of a {self.shape} batch cannot pack a tensor of shape {tuple(x.shape)}")
        return x.reshape(-1, *x.shape[2:]).index_select(0, self.index)

    def unpack(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, ...) -> (B, T, ...), with zeros at the positions left out.

        Copied into the zeros in place: one (B*T, ...) tensor, not a second one as `index_copy` makes. For the
        logits, (B, T, vocabulary), that second copy was the peak of a training step (`benchmarks/README.md`)."""
        rows = x.new_zeros(self.shape[0] * self.shape[1], *x.shape[1:])
        return rows.index_copy_(0, self.index, x).view(*self.shape, *x.shape[1:])


def source_packing(attention_mask: torch.Tensor | None) -> Packing | None:
    """The real tokens of a source batch, attention_mask (B, S) with 1 for tokens and 0 for padding.

    None when there is nothing to leave out (no padding), and when a row has no token at all: its queries
    would attend to padding only, so the padding's values would matter.
    """
    if attention_mask is None or attention_mask.dim() != 2:
        return None
    mask = attention_mask.bool()
    if mask.all() or not mask.any(dim=1).all():
        return None
    return Packing(mask)


def target_packing(needed: torch.Tensor) -> Packing | None:
    """The target positions up to each row's last needed one, needed (B, T) bool (e.g. the labelled positions).

    Under the causal mask (§3.2.3) a position depends on itself and earlier positions only, so the positions
    after a row's last needed one (right padding) can be left out. None when none can.
    """
    needed = needed.bool()
    keep = needed.flip(1).cumsum(1).flip(1) > 0  # some needed position at t or later
    if keep.all():
        return None
    return Packing(keep)
