"""Encoder and decoder layers (§3.1), built from attention (§3.2), the position-wise FFN (§3.3) and a
residual connection with layer normalisation around each of them (§3.1, dropout from §5.4).

The paper's "post-LN" sub-layer connection is

    LayerNorm(x + Dropout(Sublayer(x)))

and the optional "pre-LN" form (Wang et al. 2019; Xiong et al. 2020), common in later toolkits, is

    x + Dropout(Sublayer(LayerNorm(x)))     with one more LayerNorm after the last layer.

Each connection is one line of a layer's `forward`:

    x, weights = self.self_attn_layer_norm.residual(self.self_attn, x, attention_mask=mask)
    x, _ = self.final_layer_norm.residual(self.feed_forward, x)

Parameter names follow transformers' Marian/BART (`self_attn`, `self_attn_layer_norm`, `encoder_attn`,
`encoder_attn_layer_norm`, `final_layer_norm`), so that their weights map one to one; the FFN's
`fc1`/`fc2` sit in its own module, `feed_forward`.

Everything here but attention acts on each position separately, so with `packing` (`packing.py`) a layer takes
and returns the packed rows (N, d_model) of its batch instead of (B, T, d_model), and only its attention
sub-layers see the padded layout.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache
from transformers.modeling_layers import GradientCheckpointingLayer

from .attention import MultiHeadAttention
from .configuration_vanilla_transformer import VanillaTransformerConfig
from .onednn import onednn_linear
from .packing import Packing


class ResidualLayerNorm(nn.LayerNorm):
    """A sub-layer's LayerNorm together with the residual connection around the sub-layer (§3.1, §5.4).

    Called as a module it is a plain `LayerNorm`; `residual(sublayer, x, ...)` applies the whole
    sub-layer connection, post-LN (the paper) or pre-LN.
    """

    def __init__(self, d_model: int, eps: float, dropout: float, pre_ln: bool):
        super().__init__(d_model, eps=eps)
        self.dropout = dropout
        self.pre_ln = pre_ln

    def residual(
        self, sublayer: Callable[..., torch.Tensor | tuple], x: torch.Tensor, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, T, d_model) or packed (N, d_model) -> (LayerNorm(x + Dropout(sublayer(x, **kwargs))), the
        sub-layer's extra output), of x's shape.

        A sub-layer may return `(output, attention_weights)`; the weights are passed back, else None.
        """
        out = sublayer(self(x) if self.pre_ln else x, **kwargs)
        out, extra = out if isinstance(out, tuple) else (out, None)
        if self.training and self.dropout:  # (no call at all while decoding: this runs per layer per step)
            out = nn.functional.dropout(out, p=self.dropout, training=True)
        x = x + out
        return (x if self.pre_ln else self(x)), extra


class PositionwiseFeedForward(nn.Module):
    """FFN(x) = max(0, x W_1 + b_1) W_2 + b_2, applied to each position separately and identically (§3.3, eq. 2)."""

    def __init__(self, config: VanillaTransformerConfig, ffn_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(config.d_model, ffn_dim)  # W_1, b_1: d_model -> d_ff
        self.fc2 = nn.Linear(ffn_dim, config.d_model)  # W_2, b_2: d_ff -> d_model
        self.activation_fn = ACT2FN[config.activation_function]
        self.activation_dropout = config.activation_dropout  # not in the paper; 0 by default

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, d_model) -> (B, T, d_model), or packed rows (N, d_model) -> (N, d_model)"""
        hidden = self.activation_fn(onednn_linear(self.fc1, x))  # oneDNN when no autograd (onednn.py)
        if self.training and self.activation_dropout:
            hidden = nn.functional.dropout(hidden, p=self.activation_dropout, training=True)
        return onednn_linear(self.fc2, hidden)


def _residual_norm(config: VanillaTransformerConfig) -> ResidualLayerNorm:
    return ResidualLayerNorm(config.d_model, config.layer_norm_eps, config.dropout, config.layer_norm_position == "pre")


class EncoderLayer(GradientCheckpointingLayer):
    """Encoder layer (§3.1): multi-head self-attention, then the position-wise FFN."""

    def __init__(self, config: VanillaTransformerConfig, layer_idx: int | None = None):
        super().__init__()
        self.self_attn = MultiHeadAttention(
            config, config.encoder_attention_heads, config.encoder_head_dim, is_causal=False, layer_idx=layer_idx
        )
        self.self_attn_layer_norm = _residual_norm(config)
        self.feed_forward = PositionwiseFeedForward(config, config.encoder_ffn_dim)
        self.final_layer_norm = _residual_norm(config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        packing: Packing | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """hidden_states (B, S, d_model) -> (B, S, d_model), self-attention weights (B, h, S, S) or None.
        With `packing`, the packed rows (N, d_model) -> (N, d_model)."""
        x, weights = self.self_attn_layer_norm.residual(
            self.self_attn, hidden_states, attention_mask=attention_mask, packing=packing, **kwargs
        )
        x, _ = self.final_layer_norm.residual(self.feed_forward, x)
        return x, weights


class DecoderLayer(GradientCheckpointingLayer):
    """Decoder layer (§3.1): masked self-attention, encoder-decoder attention, then the FFN.

    The self-attention mask stops position i from attending to positions after i (§3.1, §3.2.3),
    so that predictions depend only on known outputs.
    """

    def __init__(self, config: VanillaTransformerConfig, layer_idx: int | None = None):
        super().__init__()
        heads, head_dim = config.decoder_attention_heads, config.decoder_head_dim
        self.self_attn = MultiHeadAttention(config, heads, head_dim, is_causal=True, layer_idx=layer_idx)
        self.self_attn_layer_norm = _residual_norm(config)
        self.encoder_attn = MultiHeadAttention(config, heads, head_dim, is_causal=False, layer_idx=layer_idx)
        self.encoder_attn_layer_norm = _residual_norm(config)
        self.feed_forward = PositionwiseFeedForward(config, config.decoder_ffn_dim)
        self.final_layer_norm = _residual_norm(config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        packing: Packing | None = None,
        encoder_packing: Packing | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """hidden_states (B, T, d_model), encoder_hidden_states (B, S, d_model) -> (B, T, d_model),
        self-attention weights (B, h, T, T_past+T) and cross-attention weights (B, h, T, S), or None.
        With `packing` / `encoder_packing`, hidden states / encoder states are packed rows (N, d_model), and so
        is the output."""
        x, self_weights = self.self_attn_layer_norm.residual(
            self.self_attn, hidden_states, attention_mask=attention_mask, cache=cache, packing=packing, **kwargs
        )
        cross_weights = None
        if encoder_hidden_states is not None:
            x, cross_weights = self.encoder_attn_layer_norm.residual(
                self.encoder_attn,
                x,
                key_value_states=encoder_hidden_states,
                attention_mask=encoder_attention_mask,
                cache=cache,
                packing=packing,
                key_value_packing=encoder_packing,
                **kwargs,
            )
        x, _ = self.final_layer_norm.residual(self.feed_forward, x)
        return x, self_weights, cross_weights
