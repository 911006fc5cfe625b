"""The KV cache of beam search (§6.1: beam size 4), built so that beams share what they can.

`generate()` runs beam search over B sentences as B * k rows, k beams per sentence. Two caches of
transformers' would copy more than needed at every step:

- the encoder-decoder attention's keys and values are the same for the k beams of a sentence, yet a
  per-row cache holds k copies and reorders them at every step: `BeamSearchCache` keeps one per sentence
  and never reorders it, and `fold_beams` makes the k beams' queries k query positions of their sentence;
- the decoder's self-attention cache is reordered for the surviving beams (a copy of the whole cache) and then
  grown by the step's keys and values (a second copy): `ReorderOnUpdateLayer` does both in one copy.

`PaperGenerationMixin.generate` (`generation.py`) builds this cache for every beam search; each part is
switched off alone in `benchmarks/bench_model.py --decoding-only`, and tested against transformers' own
caches in `tests/test_decoding_fast_path.py`.
"""

from __future__ import annotations

import logging

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer, EncoderDecoderCache

logger = logging.getLogger(__name__)


class BeamSearchCache(EncoderDecoderCache):
    """The KV cache for beam search, with the encoder-decoder attention's K/V stored once per sentence.

    `generate()` repeats every sentence's encoder output `num_beams` times (rows `b * k ... b * k + k - 1`
    belong to sentence b), and the cross-attention keys and values are projections of that output,
    identical for all beams of a sentence; each new beam also continues a beam of the same sentence.
    So this cache:

    - never reorders the cross-attention K/V (`reorder_cache` reorders only the self-attention cache);
    - with `beams_per_source = k > 1`, keeps them once per sentence, (B, h, S, d_k) instead of
      (B * k, h, S, d_k): the projections run on B rows instead of B * k, and each step's attention
      reads them once for the k beams, whose queries become k query positions of one sentence
      (`fold_beams`; cross-attention has no causal structure, so the order of queries is free).

    `beams_per_source=1` keeps one copy per row (what attention kernels other than eager / SDPA get,
    since their masks are not plain tensors).
    """

    def __init__(self, self_attention_cache, cross_attention_cache, beams_per_source: int = 1):
        super().__init__(self_attention_cache, cross_attention_cache)
        if not isinstance(beams_per_source, int) or beams_per_source < 1:
            raise ValueError(f"beams_per_source must be a positive integer, got {beams_per_source!r}")
        self.beams_per_source = beams_per_source

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.self_attention_cache.reorder_cache(beam_idx)

    def select_sources(self, sources: torch.LongTensor) -> None:
        """Keep only the sentences `sources` (positions in the batch) in the encoder-decoder attention's K/V (the
        loops of `beam_search.py` and `greedy_search.py` drop sentences whose search is done). Those K/V must hold
        one row per sentence: `beams_per_source` = the beam size, or 1 in greedy search. The self-attention cache
        shrinks with the next `reorder_cache`, whose rows then are those of the kept sentences' beams."""
        for layer in self.cross_attention_cache.layers:
            if layer.is_initialized:
                layer.keys = layer.keys.index_select(0, sources)
                layer.values = layer.values.index_select(0, sources)

    def per_source(self, encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        """(B * k, S, d_model) encoder output repeated for the k beams -> (B, S, d_model), one row per sentence.

        Checks that the rows really are k copies of each sentence (how `generate()` expands the encoder
        output), so that a change in transformers fails loudly instead of mixing sentences up.
        """
        k = self.beams_per_source
        rows = encoder_hidden_states.shape[0]
        grouped = encoder_hidden_states.view(rows // k, k, *encoder_hidden_states.shape[1:]) if rows % k == 0 else None
        if grouped is None or not torch.equal(grouped, grouped[:, :1].expand_as(grouped)):
            raise RuntimeError(
                f"BeamSearchCache(beams_per_source={k}): the {rows} encoder-output rows are not {k} consecutive "
                "copies of each sentence, as transformers' generate() (_expand_inputs_for_generation) used to "
                "make them; decode with BeamSearchCache(..., beams_per_source=1)."
            )
        return grouped[:, 0]


class ReorderOnUpdateLayer(DynamicLayer):
    """A self-attention cache layer for beam search whose reordering costs one copy of the cache, not two.

    At every step of beam search transformers reorders each layer's keys and values for the surviving beams
    (`DynamicLayer.reorder_cache`: `index_select`, a copy of the whole cache) and the next step appends its
    keys and values (`DynamicLayer.update`: `torch.cat`, a second copy). This layer only remembers the
    reordering (composing several in a row) and applies it in the next `update`, gathering the surviving rows
    straight into the grown tensor. Reading `keys` / `values` in any other way applies a pending reordering
    first, so the layer always holds exactly what a `DynamicLayer` would.
    """

    _pending: torch.Tensor | None = None  # beam rows still to gather, or None

    def _reordered(name: str) -> property:  # noqa: N805 (a property factory, used in the class body only)
        """`keys` / `values`: reading applies a pending reordering first; writing stores the tensor."""

        def read(self):
            self._apply_pending()
            return getattr(self, name)

        return property(read, lambda self, value: setattr(self, name, value))

    keys = _reordered("_keys")
    values = _reordered("_values")
    del _reordered

    def _apply_pending(self) -> None:
        if self._pending is not None:
            rows, self._pending = self._pending, None
            self._keys, self._values = self._keys.index_select(0, rows), self._values.index_select(0, rows)

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        if self.is_initialized and self._keys is not None and self._keys.numel() > 0:
            rows = beam_idx.to(self._keys.device)
            # Row i becomes old row beam_idx[i]; after an earlier pending reordering p, that is p[beam_idx[i]].
            self._pending = rows.clone() if self._pending is None else self._pending.index_select(0, rows)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        rows, self._pending = self._pending, None
        if rows is None:
            return super().update(key_states, value_states, *args, **kwargs)
        self._keys = _gather_and_append(self._keys, rows, key_states)
        self._values = _gather_and_append(self._values, rows, value_states)
        return self._keys, self._values


def _gather_and_append(cache: torch.Tensor, rows: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """`torch.cat([cache.index_select(0, rows), new], dim=-2)` in one pass over `cache` instead of two."""
    past = cache.shape[-2]
    grown = cache.new_empty((rows.shape[0], *cache.shape[1:-2], past + new.shape[-2], cache.shape[-1]))
    torch.index_select(cache, 0, rows, out=grown[..., :past, :])
    grown[..., past:, :] = new
    return grown


def beam_self_attention_cache(config) -> DynamicCache:
    """transformers' `DynamicCache` for the decoder's self-attention with `ReorderOnUpdateLayer`s in place of its
    `DynamicLayer`s. If a transformers release builds the cache otherwise, it warns once and keeps the cache
    as built: decoding stays correct, only the copy is not saved."""
    cache = DynamicCache(config=config)
    layers = getattr(cache, "layers", None)
    if isinstance(layers, list) and layers and all(type(layer) is DynamicLayer for layer in layers):
        cache.layers = [ReorderOnUpdateLayer() for _ in layers]
    elif not _warned.get("cache"):
        _warned["cache"] = True
        kinds = sorted({type(layer).__name__ for layer in layers}) if isinstance(layers, list) else type(layers)
        logger.warning(
            "DynamicCache(config=...) did not build a list of DynamicLayer (got %s): beam search reorders its "
            "self-attention cache as transformers does (one copy more per step); hf_vanilla_transformer "
            "needs an update for this transformers release",
            kinds,
        )
    return cache


_warned: dict[str, bool] = {}


def fold_beams(
    query: torch.Tensor, attention_mask: torch.Tensor | None, beams: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Cross-attention queries of k beams as k query positions of their sentence (`BeamSearchCache`).

    query (B * k, h, T, d_k) -> (B, h, k * T, d_k), ordered (beam, position); attention_mask
    (B * k, 1, T or 1, S) -> (B, 1, 1, S), the sentence's source padding, the same for every query.
    The kernel's output (B, k * T, h, d_v) then has the memory order of (B * k, T, h, d_v).
    """
    rows, heads, length, head_dim = query.shape
    query = query.view(rows // beams, beams, heads, length, head_dim).transpose(1, 2)
    query = query.reshape(rows // beams, heads, beams * length, head_dim)
    if attention_mask is not None:
        attention_mask = attention_mask[::beams, :, :1]
    return query, attention_mask


def unfold_beam_weights(weights: torch.Tensor, beams: int) -> torch.Tensor:
    """Attention weights (B, h, k * T, S) of folded queries -> (B * k, h, T, S), one row per beam."""
    sources, heads, folded, source_len = weights.shape
    weights = weights.view(sources, heads, beams, folded // beams, source_len).transpose(1, 2)
    return weights.reshape(sources * beams, heads, folded // beams, source_len)
