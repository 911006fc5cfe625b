"""`generate()` for the recurrent decoders: their state is the cache.

A Transformer decoder caches the keys and values of every past target position; an RNN decoder needs only its
current state, a fixed-size vector per layer, however long the prefix. transformers represents such state with its
`LinearAttentionLayer` cache layer (the layer in-library recurrent models such as Mamba use: a fixed-size state per
layer, no sequence axis, reordered by beam search). `RecurrentStateCache` is a `Cache` made of one such layer per
decoder layer, plus what the attention decoder computes once per sentence (the projected annotations `U_a h_j`,
Bahdanau et al. Appendix A.1.2: "can be pre-computed in advance").

Because every layer of the cache is a recurrent-state layer (`cache.is_linear` is all True), `generate()` gives the
model the whole decoder prefix on the first step and then one token per step, and beam search calls
`cache.reorder_cache(beam_idx)` after each step: all public `Cache` behaviour, no private hook.

`RecurrentGenerationMixin` is the package's `PaperGenerationMixin` (the §6.1 decoding defaults of the Transformer,
so that all models here decode alike) that starts each `generate()` call with an empty `RecurrentStateCache`
(transformers would otherwise build a key/value `DynamicCache`).

Assisted generation (a draft model, prompt lookup or early exit) lets the model read draft tokens and then crops
the cache back to the accepted prefix. A recurrent state cannot be cropped back, so `generate()` refuses it with a
clear error. transformers up to 5.24 refused it itself for models marked `_is_stateful`; 5.25 dropped that flag
and would go ahead, so the refusal lives here, the same on every release.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, LinearAttentionLayer

from .compat import CACHE_NAME
from .generation import PaperGenerationMixin


class RecurrentStateCache(Cache):
    """The decoder state `(B, L, k, H)` (batch, layers, k = 1 for a GRU's `h` or 2 for an LSTM's `(h, c)`, hidden
    size) after the tokens seen so far, and the attention keys `U_a h_j` `(B, S, A)` of an attention decoder."""

    def __init__(self, num_layers: int):
        if num_layers < 1:
            raise ValueError(f"num_layers must be a positive integer, got {num_layers}")
        super().__init__(layers=[LinearAttentionLayer() for _ in range(num_layers)])
        self.attention_keys: torch.Tensor | None = None
        self.seen_tokens = 0

    @property
    def has_state(self) -> bool:
        """Whether the decoder has read tokens into this cache (else it starts from the encoder)."""
        return self.seen_tokens > 0

    def state(self) -> torch.Tensor:
        """The cached state, (B, L, k, H)."""
        if not self.has_state:
            raise ValueError("RecurrentStateCache is empty: the decoder has not read any token into it yet")
        return torch.stack([layer.recurrent_states[0] for layer in self.layers], dim=1)

    def update_state(self, state: torch.Tensor, num_new_tokens: int) -> None:
        """Store the state (B, L, k, H) after the decoder read `num_new_tokens` more tokens."""
        if state.shape[1] != len(self.layers):
            raise ValueError(f"state of {state.shape[1]} layers for a cache of {len(self.layers)} layers")
        for index, layer in enumerate(self.layers):
            layer.update_recurrent_state(state[:, index])
        self.seen_tokens += num_new_tokens

    @property
    def is_compileable(self) -> bool:
        """False: the models are not compiled (`_can_compile_fullgraph = False`), and for a compileable cache
        transformers 5.23 prepares a 4D attention mask from `get_mask_sizes`, which recurrent-state layers lack."""
        return False

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """Target tokens the cached state has read."""
        return self.seen_tokens

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Beam search: row i continues the hypothesis in row `beam_idx[i]`."""
        super().reorder_cache(beam_idx)
        if self.attention_keys is not None:
            self.attention_keys = self.attention_keys.index_select(0, beam_idx.to(self.attention_keys.device))

    def reset(self) -> None:
        super().reset()
        self.attention_keys = None
        self.seen_tokens = 0


ASSISTED_GENERATION_ARGUMENTS = ("assistant_model", "prompt_lookup_num_tokens", "assistant_early_exit")
"""The `generate()` arguments (or generation-config fields) that select assisted generation."""


class RecurrentGenerationMixin(PaperGenerationMixin):
    """`PaperGenerationMixin` whose `generate()` caches the recurrent state (`RecurrentStateCache`)."""

    def generate(self, inputs: torch.Tensor | None = None, generation_config=None, **kwargs):
        """`PaperGenerationMixin.generate` (beam 4, GNMT length penalty 0.6, at most input length + 50 new tokens by
        default), with an empty `RecurrentStateCache` unless `use_cache=False` or a cache is given."""
        config = generation_config or self.generation_config
        requested = [
            name
            for name in ASSISTED_GENERATION_ARGUMENTS
            if kwargs.get(name) is not None or getattr(config, name, None) is not None
        ]
        if requested:
            raise ValueError(
                f"{type(self).__name__} does not support assisted generation (given: {', '.join(requested)}): its "
                "cache is a recurrent state, which cannot be rolled back to a shorter prefix when draft tokens are "
                "rejected. Decode with greedy or beam search instead."
            )
        use_cache = kwargs.get("use_cache", config.use_cache)
        no_cache_given = kwargs.get("cache") is None and kwargs.get("past_key_values") is None
        if use_cache is not False and no_cache_given:
            kwargs[CACHE_NAME] = RecurrentStateCache(self.config.decoder_layers)
        return super().generate(inputs, generation_config=generation_config, **kwargs)
