"""Scaled dot-product attention (§3.2.1) and multi-head attention (§3.2.2).

The same `MultiHeadAttention` module serves the three uses of §3.2.3: encoder self-attention,
masked decoder self-attention and encoder-decoder ("cross") attention. The attention kernel is
chosen by `config._attn_implementation` through transformers' registry: `"eager"` is
`scaled_dot_product_attention` below, written as in the paper; `"sdpa"` is
`torch.nn.functional.scaled_dot_product_attention` (the same numbers, faster).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from transformers.cache_utils import Cache, EncoderDecoderCache
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from .configuration_vanilla_transformer import VanillaTransformerConfig
from .generation import fold_beams, unfold_beam_weights


def scaled_dot_product_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V   (§3.2.1, eq. 1).

    Shapes: query (B, h, T_q, d_k), key (B, h, T_k, d_k), value (B, h, T_k, d_v).
    `attention_mask` is additive, broadcastable to (B, h, T_q, T_k): 0 where attention is allowed and
    a large negative number where it is not (padding, and future positions in the decoder, §3.2.3).
    Returns the output (B, T_q, h, d_v), heads not yet concatenated, and the weights (B, h, T_q, T_k).
    """
    scores = torch.matmul(query, key.transpose(-2, -1)) * scaling  # (B, h, T_q, T_k)
    if attention_mask is not None:
        scores = scores + attention_mask
    weights = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    output = torch.matmul(weights, value).transpose(1, 2).contiguous()  # (B, T_q, h, d_v)
    return output, weights


class MultiHeadAttention(nn.Module):
    """MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O, head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V).

    The h per-head projections are stored as one `(h * d_k, d_model)` matrix each (`q_proj`, `k_proj`,
    `v_proj`), the usual equivalent layout; `out_proj` is W^O (§3.2.2).

    Decoding with a KV cache: self-attention appends this step's keys/values to
    `cache.self_attention_cache`; cross-attention projects the encoder output once, on the first
    step, and reuses it afterwards (`cache.is_updated[layer_idx]`).
    """

    def __init__(
        self,
        config: VanillaTransformerConfig,
        num_heads: int,
        head_dim: int,
        is_causal: bool,
        layer_idx: int | None = None,
    ):
        super().__init__()
        self.config = config
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.scaling = head_dim**-0.5  # 1 / sqrt(d_k)
        self.dropout = config.attention_dropout
        # Read by the SDPA/flash integrations: without it they assume causal attention.
        self.is_causal = is_causal
        self.layer_idx = layer_idx
        inner_dim = num_heads * head_dim
        bias = config.attention_bias
        self.q_proj = nn.Linear(config.d_model, inner_dim, bias=bias)
        self.k_proj = nn.Linear(config.d_model, inner_dim, bias=bias)
        self.v_proj = nn.Linear(config.d_model, inner_dim, bias=bias)
        self.out_proj = nn.Linear(inner_dim, config.d_model, bias=bias)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, h * d_k) -> (B, h, T, d_k)"""
        return x.view(*x.shape[:-1], self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        hidden_states: torch.Tensor,
        key_value_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """hidden_states (B, T_q, d_model) are the queries; keys/values come from `key_value_states`
        (B, T_k, d_model) for cross-attention, else from `hidden_states`.
        Returns the output (B, T_q, d_model) and the attention weights (B, h, T_q, T_k), or None
        when the kernel does not compute them (SDPA)."""
        is_cross_attention = key_value_states is not None
        query = self._split_heads(self.q_proj(hidden_states))
        # Beam search: one cross-attention K/V per sentence, shared by its beams (generation.BeamSearchCache).
        beams = getattr(cache, "beams_per_source", 1) if is_cross_attention else 1

        layer_cache = cache
        if isinstance(cache, EncoderDecoderCache):
            layer_cache = cache.cross_attention_cache if is_cross_attention else cache.self_attention_cache
        reuse_cross = (
            is_cross_attention
            and isinstance(cache, EncoderDecoderCache)
            and cache.is_updated.get(self.layer_idx, False)
        )
        if reuse_cross:  # the encoder output does not change while decoding: project it once
            key, value = layer_cache.layers[self.layer_idx].keys, layer_cache.layers[self.layer_idx].values
        else:
            source = key_value_states if is_cross_attention else hidden_states
            source = cache.per_source(source) if beams > 1 else source
            key = self._split_heads(self.k_proj(source))
            value = self._split_heads(self.v_proj(source))
            if layer_cache is not None:
                key, value = layer_cache.update(key, value, self.layer_idx)
                if is_cross_attention and isinstance(cache, EncoderDecoderCache):
                    cache.is_updated[self.layer_idx] = True
        if beams > 1:
            query, attention_mask = fold_beams(query, attention_mask, beams)

        attention: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, scaled_dot_product_attention
        )
        output, weights = attention(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=self.dropout if self.training else 0.0,
            scaling=self.scaling,
            **kwargs,
        )
        output = output.reshape(*hidden_states.shape[:-1], -1)  # Concat(head_1..head_h): (B, T_q, h*d_v)
        weights = unfold_beam_weights(weights, beams) if beams > 1 and weights is not None else weights
        return self.out_proj(output), weights
