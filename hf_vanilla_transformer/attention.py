"""Scaled dot-product attention (§3.2.1) and multi-head attention (§3.2.2).

The same `MultiHeadAttention` module serves the three uses of §3.2.3: encoder self-attention,
masked decoder self-attention and encoder-decoder ("cross") attention. The attention kernel is
chosen by `config._attn_implementation` through transformers' registry: `"eager"` is
`scaled_dot_product_attention` below, written as in the paper; `"sdpa"` is
`torch.nn.functional.scaled_dot_product_attention` (the same numbers, faster).

The score that compares a query with a key is `config.attention_score` (§3.2.1 discusses the choice):

- `"scaled_dot_product"` (the paper): `q·k / sqrt(d_k)`;
- `"dot_product"`: `q·k`, the same kernels with scaling 1 (eager and SDPA alike);
- `"additive"`: `w_v^T tanh(W_q q + W_k k)` (Bahdanau et al. 2015), one small network per head
  (`AdditiveScore`), computed by `additive_attention`. SDPA, flash and flex attention compute only dot
  products, so a model with additive scores always runs this eager kernel: `attention_kernel_for_score`
  turns any requested implementation into `"eager"` (warning when another one was asked for), and the
  model calls it from transformers' hook for that choice.

For q, k with independent unit-variance components `q·k` has variance d_k, so for large d_k the
unscaled softmax saturates and its gradients vanish: `explain/score_variance.py` measures it.

Decoding with a KV cache asks for one query per sentence at a time (or the k folded beams of a sentence
in cross-attention). For so few queries over many sentences torch's fused SDPA kernel for CPUs cost more than
the plain matrix products of eq. 1 (1.4x-3x with 64 sentences on an AVX-512 CPU; 1.0x-1.1x with 64 and
1.2x-1.5x with 256 rows on an AVX2-only one), so `decode_step_attention` computes those steps of an `"sdpa"`
model with the products, without autograd only: the same formula, summed in another order. With few sentences
the kernel's one call beats the products' six (2x-3x faster for 1 to 4 sentences on the AVX2-only CPU), so
steps with fewer than `DECODE_STEP_MIN_ROWS` rows keep it (`benchmarks/bench_step_attention.py`,
`benchmarks/README.md`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from transformers.cache_utils import Cache, EncoderDecoderCache
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import logging

from .beam_cache import fold_beams, unfold_beam_weights
from .configuration_vanilla_transformer import VanillaTransformerConfig
from .onednn import onednn_linear
from .packing import Packing

DECODE_STEP_MAX_QUERIES = 16
"""Most query positions for which a cached decoding step of an SDPA model uses `decode_step_attention`
(0: never, torch's SDPA kernel throughout; the benchmark's ablation)."""

DECODE_STEP_MIN_ROWS = 64
"""Fewest query rows (sentences; beam rows in self-attention) for which a cached decoding step of an SDPA model
uses `decode_step_attention`; below, torch's SDPA kernel was faster (`benchmarks/bench_step_attention.py`)."""

logger = logging.get_logger(__name__)


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
    `attention_mask` is broadcastable to (B, h, T_q, T_k), additive: 0 where attention is allowed and a large
    negative number where it is not (padding, and future positions in the decoder, §3.2.3), or boolean: True
    where attention is allowed (as transformers builds masks for SDPA), -inf then where it is not.
    Returns the output (B, T_q, h, d_v), heads not yet concatenated, and the weights (B, h, T_q, T_k).
    """
    scores = torch.matmul(query, key.transpose(-2, -1)) * scaling  # (B, h, T_q, T_k)
    if attention_mask is not None and attention_mask.dtype == torch.bool:
        scores = scores.masked_fill_(~attention_mask, float("-inf"))
    elif attention_mask is not None:
        scores = scores + attention_mask
    weights = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    if dropout and module.training:
        weights = nn.functional.dropout(weights, p=dropout, training=True)
    output = torch.matmul(weights, value).transpose(1, 2).contiguous()  # (B, T_q, h, d_v)
    return output, weights


def decode_step_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """`scaled_dot_product_attention` for the few queries of a cached decoding step, where an SDPA
    model would call torch's fused kernel.

    `attention_mask` comes as transformers builds it for SDPA: boolean (True where attention is
    allowed), additive, or None. Like the SDPA integration it returns no weights. It is called only
    without autograd and dropout, and never for causal self-attention over several queries (see
    `MultiHeadAttention._kernel`), so no causal mask is left implicit.
    """
    output, _ = scaled_dot_product_attention(module, query, key, value, attention_mask, scaling)
    return output, None


class AdditiveScore(nn.Module):
    """Additive attention scores, score(q, k) = w_v^T tanh(W_q q + W_k k) (Bahdanau et al. 2015), per head.

    §3.2.1 compares them with dot-product scores: similar for small d_k, better than unscaled dot
    products for larger d_k, but slower and larger in practice. Here they act on each head's projected
    queries and keys (d_k each), with a hidden size of d_k and parameters of their own for every head:

    - `query_weight` (h, d_k, d_k): W_q of each head;
    - `key_weight` (h, d_k, d_k): W_k of each head;
    - `score_vector` (h, d_k): w_v of each head.

    No biases, as in the formula. They are initialised by the model's `_init_weights` (Xavier uniform,
    like every projection).
    """

    def __init__(self, num_heads: int, head_dim: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.query_weight = nn.Parameter(torch.empty(num_heads, head_dim, head_dim))
        self.key_weight = nn.Parameter(torch.empty(num_heads, head_dim, head_dim))
        self.score_vector = nn.Parameter(torch.empty(num_heads, head_dim))

    def forward(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """query (B, h, T_q, d_k), key (B, h, T_k, d_k) -> scores (B, h, T_q, T_k)."""
        query = torch.einsum("bhqd,had->bhqa", query, self.query_weight)  # W_q q: (B, h, T_q, d_a)
        key = torch.einsum("bhkd,had->bhka", key, self.key_weight)  # W_k k: (B, h, T_k, d_a)
        hidden = torch.tanh(query.unsqueeze(3) + key.unsqueeze(2))  # (B, h, T_q, T_k, d_a)
        return torch.einsum("bhqka,ha->bhqk", hidden, self.score_vector)

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, head_dim={self.head_dim}"


def additive_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(score(Q, K)) V with `module.additive_score` as the score (§3.2.1's additive attention).

    Shapes and the additive `attention_mask` as in `scaled_dot_product_attention`; `scaling` is not used.
    """
    scores = module.additive_score(query, key)  # (B, h, T_q, T_k)
    if attention_mask is not None:
        scores = scores + attention_mask
    weights = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    output = torch.matmul(weights, value).transpose(1, 2).contiguous()  # (B, T_q, h, d_v)
    return output, weights


def attention_kernel_for_score(config: VanillaTransformerConfig, requested: str | None) -> str | None:
    """The attention implementation a model with `config.attention_score` can run, given the `requested` one.

    Dot-product scores run with any kernel. SDPA, flash and flex attention cannot compute additive
    scores, so for `"additive"` every request becomes `"eager"` (the masks transformers builds then
    match `additive_attention`), with a warning when another kernel was asked for explicitly.
    """
    if config.attention_score != "additive" or requested == "eager":
        return requested
    if requested is not None:
        logger.warning_once(
            f"attention_score='additive' runs with eager attention: attn_implementation={requested!r} "
            "computes only dot-product scores, so it is not used."
        )
    return "eager"


class MultiHeadAttention(nn.Module):
    """MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O, head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V).

    The h per-head projections are stored as one `(h * d_k, d_model)` matrix each (`q_proj`, `k_proj`,
    `v_proj`), the usual equivalent layout; `out_proj` is W^O (§3.2.2).

    With `config.skip_padding`, training forwards pass packed hidden states (`packing.py`): the projections run
    on the real tokens only, and the attention kernel on the padded layout.

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
        # 1 / sqrt(d_k) (§3.2.1); 1 for unscaled dot products; unused by additive scores.
        self.scaling = head_dim**-0.5 if config.attention_score == "scaled_dot_product" else 1.0
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
        self.additive_score = AdditiveScore(num_heads, head_dim) if config.attention_score == "additive" else None

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, h * d_k) -> (B, h, T, d_k)"""
        return x.view(*x.shape[:-1], self.num_heads, self.head_dim).transpose(1, 2)

    def _project(self, projection: nn.Linear, x: torch.Tensor, packing: Packing | None) -> torch.Tensor:
        """x (B, T, d_model), or its packed rows (N, d_model) with `packing` -> x W split into heads, (B, h, T, d_k).

        Packed rows are projected packed and then scattered to (B, T), zeros at the positions left out."""
        x = onednn_linear(projection, x)  # oneDNN when no autograd (onednn.py)
        return self._split_heads(packing.unpack(x) if packing is not None else x)

    def forward(
        self,
        hidden_states: torch.Tensor,
        key_value_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        packing: Packing | None = None,
        key_value_packing: Packing | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """hidden_states (B, T_q, d_model) are the queries; keys/values come from `key_value_states`
        (B, T_k, d_model) for cross-attention, else from `hidden_states`.
        Returns the output (B, T_q, d_model) and the attention weights (B, h, T_q, T_k), or None
        when the kernel does not compute them (SDPA).

        With `packing`, `hidden_states` and the output are the packed rows (N_q, d_model) of the (B, T_q)
        batch; with `key_value_packing`, `key_value_states` are packed rows (N_k, d_model) of (B, T_k).
        Only the packed rows are projected; the kernel sees (B, h, T, d_k) with zeros at the positions left
        out, which the masks hide from every kept query (`packing.py`). Not used with a cache."""
        is_cross_attention = key_value_states is not None
        query = self._project(self.q_proj, hidden_states, packing)
        # Beam search: one cross-attention K/V per sentence, shared by its beams (beam_cache.BeamSearchCache).
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
            source_packing = key_value_packing if is_cross_attention else packing
            key = self._project(self.k_proj, source, source_packing)
            value = self._project(self.v_proj, source, source_packing)
            if layer_cache is not None:
                key, value = layer_cache.update(key, value, self.layer_idx)
                if is_cross_attention and isinstance(cache, EncoderDecoderCache):
                    cache.is_updated[self.layer_idx] = True
        if beams > 1:
            query, attention_mask = fold_beams(query, attention_mask, beams)

        attention = self._kernel(query, is_cross_attention, cached=cache is not None)
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
        batch_shape = packing.shape if packing is not None else hidden_states.shape[:-1]
        output = output.reshape(*batch_shape, -1)  # Concat(head_1..head_h): (B, T_q, h*d_v)
        if packing is not None:
            output = packing.pack(output)  # (N_q, h*d_v)
        weights = unfold_beam_weights(weights, beams) if beams > 1 and weights is not None else weights
        return onednn_linear(self.out_proj, output), weights

    def _kernel(self, query: torch.Tensor, is_cross_attention: bool, cached: bool) -> Callable:
        """The attention function for this call: the additive kernel for additive scores; for an SDPA model's
        cached decoding step without autograd over at least `DECODE_STEP_MIN_ROWS` rows (one query, or a few
        folded beams in cross-attention, which is never causal) `decode_step_attention`; else transformers' kernel
        for `config._attn_implementation`."""
        if self.additive_score is not None:
            return self._additive_kernel()
        implementation = self.config._attn_implementation
        queries = query.shape[-2]
        if (
            implementation == "sdpa"
            and cached
            and not torch.is_grad_enabled()
            and (queries == 1 or is_cross_attention)
            and queries <= DECODE_STEP_MAX_QUERIES
            and query.shape[0] >= DECODE_STEP_MIN_ROWS
        ):
            return decode_step_attention
        return ALL_ATTENTION_FUNCTIONS.get_interface(implementation, scaled_dot_product_attention)

    def _additive_kernel(self) -> Callable:
        """`additive_attention`, after checking that transformers built the masks for eager attention."""
        if self.config._attn_implementation not in (None, "eager"):
            raise RuntimeError(
                f"attention_score='additive' needs eager attention, but this model runs "
                f"attn_implementation={self.config._attn_implementation!r}: transformers did not call "
                "_check_and_adjust_attn_implementation, which the model uses to choose eager "
                "(attention.attention_kernel_for_score). Set model.set_attn_implementation('eager')."
            )
        return additive_attention
