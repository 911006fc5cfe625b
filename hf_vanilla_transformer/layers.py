"""Encoder and decoder layers (§3.1) built from attention (§3.2) and the position-wise FFN (§3.3).

Every sub-layer is wrapped in a residual connection with layer normalisation. The paper's "post-LN"
form (§3.1, dropout from §5.4) is

    LayerNorm(x + Dropout(Sublayer(x)))

and the optional "pre-LN" form (Wang et al. 2019; Xiong et al. 2020), common in later toolkits, is

    x + Dropout(Sublayer(LayerNorm(x)))     with one more LayerNorm after the last layer.

Module names follow transformers' Marian/BART (`self_attn`, `self_attn_layer_norm`, `encoder_attn`,
`encoder_attn_layer_norm`, `fc1`, `fc2`, `final_layer_norm`) so that weights map one to one.
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


def residual(
    x: torch.Tensor,
    sublayer: Callable[[torch.Tensor], torch.Tensor],
    norm: nn.LayerNorm,
    dropout: float,
    training: bool,
    pre_ln: bool,
) -> torch.Tensor:
    """Residual connection around `sublayer` with LayerNorm after (paper) or before (pre-LN) it."""
    if pre_ln:
        return x + nn.functional.dropout(sublayer(norm(x)), p=dropout, training=training)
    return norm(x + nn.functional.dropout(sublayer(x), p=dropout, training=training))


class FeedForwardMixin:
    """FFN(x) = max(0, x W_1 + b_1) W_2 + b_2, applied to each position separately (§3.3, eq. 2)."""

    fc1: nn.Linear
    fc2: nn.Linear

    def _init_ffn(self, config: VanillaTransformerConfig, ffn_dim: int) -> None:
        self.fc1 = nn.Linear(config.d_model, ffn_dim)  # W_1, b_1: d_model -> d_ff
        self.fc2 = nn.Linear(ffn_dim, config.d_model)  # W_2, b_2: d_ff -> d_model
        self.activation_fn = ACT2FN[config.activation_function]
        self.activation_dropout = config.activation_dropout

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.activation_fn(self.fc1(x))
        hidden = nn.functional.dropout(hidden, p=self.activation_dropout, training=self.training)
        return self.fc2(hidden)


class EncoderLayer(GradientCheckpointingLayer, FeedForwardMixin):
    """Encoder layer (§3.1): multi-head self-attention, then the position-wise FFN."""

    def __init__(self, config: VanillaTransformerConfig, layer_idx: int | None = None):
        super().__init__()
        self.pre_ln = config.layer_norm_position == "pre"
        self.dropout = config.dropout
        self.self_attn = MultiHeadAttention(
            config, config.encoder_attention_heads, config.encoder_head_dim, is_causal=False, layer_idx=layer_idx
        )
        self.self_attn_layer_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self._init_ffn(config, config.encoder_ffn_dim)
        self.final_layer_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """hidden_states (B, S, d_model) -> (B, S, d_model), self-attention weights (B, h, S, S) or None."""
        weights = None

        def self_attention(x: torch.Tensor) -> torch.Tensor:
            nonlocal weights
            out, weights = self.self_attn(x, attention_mask=attention_mask, **kwargs)
            return out

        hidden_states = residual(
            hidden_states, self_attention, self.self_attn_layer_norm, self.dropout, self.training, self.pre_ln
        )
        hidden_states = residual(
            hidden_states, self.feed_forward, self.final_layer_norm, self.dropout, self.training, self.pre_ln
        )
        return hidden_states, weights


class DecoderLayer(GradientCheckpointingLayer, FeedForwardMixin):
    """Decoder layer (§3.1): masked self-attention, encoder-decoder attention, then the FFN.

    The self-attention mask stops position i from attending to positions after i (§3.1, §3.2.3),
    so that predictions depend only on known outputs.
    """

    def __init__(self, config: VanillaTransformerConfig, layer_idx: int | None = None):
        super().__init__()
        self.pre_ln = config.layer_norm_position == "pre"
        self.dropout = config.dropout
        heads, head_dim = config.decoder_attention_heads, config.decoder_head_dim
        self.self_attn = MultiHeadAttention(config, heads, head_dim, is_causal=True, layer_idx=layer_idx)
        self.self_attn_layer_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.encoder_attn = MultiHeadAttention(config, heads, head_dim, is_causal=False, layer_idx=layer_idx)
        self.encoder_attn_layer_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self._init_ffn(config, config.decoder_ffn_dim)
        self.final_layer_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        past_key_values: Cache | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """hidden_states (B, T, d_model), encoder_hidden_states (B, S, d_model) -> (B, T, d_model),
        self-attention weights (B, h, T, T_past+T) and cross-attention weights (B, h, T, S), or None."""
        self_weights = cross_weights = None

        def self_attention(x: torch.Tensor) -> torch.Tensor:
            nonlocal self_weights
            out, self_weights = self.self_attn(
                x, attention_mask=attention_mask, past_key_values=past_key_values, **kwargs
            )
            return out

        def encoder_attention(x: torch.Tensor) -> torch.Tensor:
            nonlocal cross_weights
            out, cross_weights = self.encoder_attn(
                x,
                key_value_states=encoder_hidden_states,
                attention_mask=encoder_attention_mask,
                past_key_values=past_key_values,
                **kwargs,
            )
            return out

        hidden_states = residual(
            hidden_states, self_attention, self.self_attn_layer_norm, self.dropout, self.training, self.pre_ln
        )
        if encoder_hidden_states is not None:
            hidden_states = residual(
                hidden_states,
                encoder_attention,
                self.encoder_attn_layer_norm,
                self.dropout,
                self.training,
                self.pre_ln,
            )
        hidden_states = residual(
            hidden_states, self.feed_forward, self.final_layer_norm, self.dropout, self.training, self.pre_ln
        )
        return hidden_states, self_weights, cross_weights
