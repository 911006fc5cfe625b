"""The encoder-decoder Transformer of Vaswani et al. (2017), "Attention Is All You Need", as a
Hugging Face `PreTrainedModel`.

Map of the paper to this package:

| paper                                      | where                                              |
|--------------------------------------------|----------------------------------------------------|
| §3.1 encoder and decoder stacks            | `VanillaTransformerEncoder`, `VanillaTransformerDecoder`, `layers.py` |
| §3.2.1 scaled dot-product attention        | `attention.scaled_dot_product_attention`           |
| §3.2.2 multi-head attention                | `attention.MultiHeadAttention`                     |
| §3.2.3 masking of future positions         | `create_causal_mask` in `VanillaTransformerDecoder` |
| §3.3 position-wise feed-forward network    | `layers.PositionwiseFeedForward`                   |
| §3.4 shared embeddings, sqrt(d_model)      | `VanillaTransformerModel.shared`, `embed_scale`, `lm_head` tying |
| §3.5 sinusoidal positional encoding        | `positional_encoding.py`                           |
| §5.4 residual dropout, label smoothing     | `layers.ResidualLayerNorm`, `label_smoothed_nll_loss` |
| §6.1 beam 4, length penalty alpha 0.6      | `generation.py` (`paper_generation_config`, GNMT penalty) |

Deviations from the paper (each is tested in `tests/`):

1. Attention projections have no bias by default, like the paper's W matrices; `attention_bias=True`
   adds them (fairseq, Marian, torch). Not a deviation, listed because toolkits differ.
2. Initialisation: the paper does not state one. We follow its reference code family: Xavier/Glorot
   uniform for every projection matrix, zero biases, and N(0, d_model^-0.5) for the shared
   embedding (tensor2tensor, fairseq), so that embeddings times sqrt(d_model) have unit variance.
3. Label smoothing (§5.4) is torch's: the true class gets 1 - eps + eps/V, every class eps/V
   (Szegedy et al. 2016, the paper's reference [36]); fairseq spreads eps over the V-1 other classes.
   Padding positions are excluded from the loss, and the loss is averaged over target tokens.
4. Length penalty: with `length_penalty_form="gnmt"` (the generation config's default) finished hypotheses are ranked by
   `log p / ((5 + |Y|) / 6) ** alpha` as the paper does (§6.1, via Wu et al. 2016, where |Y| counts
   the generated tokens including EOS); transformers' own ranking `log p / |Y| ** alpha` is
   `length_penalty_form="hf"`.
5. The paper stops beam search early "when possible" (§6.1); we use transformers' beam search
   stopping rule (`early_stopping=False` heuristic), and a maximum output length of input length + 50.
6. A decoder start token `<s>` precedes every target (the paper does not say how decoding starts).
7. Optional, off by default: pre-LN, learned positions, GELU, attention/activation dropout,
   untied or unshared embeddings, the concatenated sin/cos layout.

Padding (`config.skip_padding`, on by default; `packing.py`): the position-wise layers run on real tokens
only, the source tokens and, for a forward with labels, the target positions up to each row's last labelled
one. The same loss, gradients and outputs at those positions; the outputs at the other positions (encoder
states at source padding, logits after a row's last label) are zeros instead of numbers nothing uses.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache
from transformers.masking_utils import create_bidirectional_mask, create_causal_mask
from transformers.modeling_outputs import (
    BaseModelOutput,
    BaseModelOutputWithPastAndCrossAttentions,
    Seq2SeqLMOutput,
    Seq2SeqModelOutput,
)
from transformers.utils import can_return_tuple

from .attention import AdditiveScore, attention_kernel_for_score
from .compat import cache_field, output_cache, resolve_cache
from .conditional_generation import ConditionalGenerationMixin
from .configuration_vanilla_transformer import VanillaTransformerConfig
from .generation import PaperGenerationMixin, paper_generation_config
from .layers import DecoderLayer, EncoderLayer
from .onednn import onednn_linear
from .packing import source_packing, target_packing
from .positional_encoding import LearnedPositionalEmbedding, SinusoidalPositionalEncoding, check_positions_fit
from .seq2seq_loss import label_smoothed_nll_loss, loss_positions  # shared with the recurrent models


class VanillaTransformerPreTrainedModel(PreTrainedModel):
    config: VanillaTransformerConfig
    config_class = VanillaTransformerConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["EncoderLayer", "DecoderLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _can_compile_fullgraph = False

    # Checkpoints saved before the FFN became its own module (`PositionwiseFeedForward`) hold
    # `layers.N.fc1` / `fc2`, as Marian does; they load through this public `key_mapping`.
    LEGACY_KEY_MAPPING = {r"layers\.(\d+)\.fc([12])\.": r"layers.\1.feed_forward.fc\2."}

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        kwargs.setdefault("key_mapping", cls.LEGACY_KEY_MAPPING)
        return super().from_pretrained(*args, **kwargs)

    def _check_and_adjust_attn_implementation(self, attn_implementation: str | None, *args, **kwargs) -> str:
        # transformers' hook for a config-dependent kernel choice (its HrmText model uses it too): additive
        # attention scores run only with eager attention (attention.attention_kernel_for_score).
        attn_implementation = attention_kernel_for_score(self.config, attn_implementation)
        return super()._check_and_adjust_attn_implementation(attn_implementation, *args, **kwargs)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Xavier-uniform projections, zero biases, N(0, d_model^-0.5) embeddings, exact PE tables."""
        if isinstance(module, nn.Linear):
            init.xavier_uniform_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, LearnedPositionalEmbedding):
            init.normal_(module.weight, mean=0.0, std=self.config.init_std)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=self.config.d_model**-0.5)
            if module.padding_idx is not None and not getattr(module.weight, "_is_hf_initialized", False):
                init.zeros_(module.weight[module.padding_idx])
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, SinusoidalPositionalEncoding):
            init.copy_(
                module.table, SinusoidalPositionalEncoding(module.num_positions, module.d_model, module.layout).table
            )
        elif isinstance(module, AdditiveScore):
            # Xavier uniform for each head's W_q, W_k (d_k -> d_k) and w_v (d_k -> 1): U(-a, a), a = sqrt(6/(in+out)).
            d = module.head_dim
            for weight, fan_out in ((module.query_weight, d), (module.key_weight, d), (module.score_vector, 1)):
                bound = math.sqrt(6 / (d + fan_out))
                init.uniform_(weight, -bound, bound)


def _make_positions(config: VanillaTransformerConfig) -> nn.Module:
    if config.position_embedding_type == "learned":
        return LearnedPositionalEmbedding(config.max_position_embeddings, config.d_model)
    return SinusoidalPositionalEncoding(config.max_position_embeddings, config.d_model, config.sinusoidal_layout)


class _Stack(VanillaTransformerPreTrainedModel):
    """What the encoder and decoder stacks share: token embedding * sqrt(d_model) + positions,
    dropout on the sum (§3.4, §3.5, §5.4), and the final LayerNorm that pre-LN needs."""

    def __init__(self, config: VanillaTransformerConfig):
        super().__init__(config)
        self.embed_scale = math.sqrt(config.d_model) if config.scale_embedding else 1.0
        self.embed_tokens = nn.Embedding(config.vocab_size, config.d_model, config.pad_token_id)
        self.embed_positions = _make_positions(config)
        self.dropout = config.dropout
        pre_ln = config.layer_norm_position == "pre"
        self.layer_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps) if pre_ln else None
        self.gradient_checkpointing = False

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_tokens = value

    def embed(self, input_ids, inputs_embeds, past_length: int, where: str) -> torch.Tensor:
        """(B, T) ids or (B, T, d_model) embeddings -> Dropout(E * sqrt(d_model) + PE), (B, T, d_model)."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError(f"{where}: pass exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            if input_ids.numel() == 0:
                raise ValueError(f"{where}: input_ids is empty (shape {tuple(input_ids.shape)})")
            inputs_embeds = self.embed_tokens(input_ids)
        seq_len = inputs_embeds.shape[1]
        check_positions_fit(past_length, seq_len, self.config.max_position_embeddings, where)
        positions = torch.arange(past_length, past_length + seq_len, device=inputs_embeds.device)
        hidden = inputs_embeds * self.embed_scale + self.embed_positions(positions).to(inputs_embeds.dtype)
        if self.training and self.dropout:
            hidden = nn.functional.dropout(hidden, p=self.dropout, training=True)
        return hidden

    def finish(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.layer_norm(hidden_states) if self.layer_norm is not None else hidden_states

    def _output_flags(self, kwargs: dict) -> tuple[bool, bool]:
        attentions = kwargs.pop("output_attentions", None)
        hidden = kwargs.pop("output_hidden_states", None)
        attentions = self.config.output_attentions if attentions is None else attentions
        hidden = self.config.output_hidden_states if hidden is None else hidden
        return bool(attentions), bool(hidden)

    def _may_skip_padding(self, output_attentions: bool, output_hidden_states: bool) -> bool:
        """Whether the layers may run on packed real tokens (`packing.py`): `config.skip_padding`, no per-layer
        outputs asked (they keep every position), and no torch.compile / export tracing (the number of real
        tokens is data-dependent)."""
        return (
            self.config.skip_padding
            and not (output_attentions or output_hidden_states)
            and not torch.compiler.is_compiling()
        )


class VanillaTransformerEncoder(_Stack):
    """N identical layers of self-attention + FFN over the source (§3.1)."""

    def __init__(self, config: VanillaTransformerConfig):
        super().__init__(config)
        self.layers = nn.ModuleList([EncoderLayer(config, i) for i in range(config.encoder_layers)])
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs,
    ) -> BaseModelOutput:
        """input_ids (B, S), attention_mask (B, S) with 1 for tokens and 0 for padding -> (B, S, d_model).

        With `config.skip_padding` and padding in the batch, the layers run on the real tokens only (`packing.py`),
        and the output is zero at padding."""
        output_attentions, output_hidden_states = self._output_flags(kwargs)
        hidden_states = self.embed(input_ids, inputs_embeds, 0, "encoder")
        mask = create_bidirectional_mask(config=self.config, inputs_embeds=hidden_states, attention_mask=attention_mask)
        packing = None
        if self._may_skip_padding(output_attentions, output_hidden_states):
            packing = source_packing(attention_mask)
        if packing is not None:
            hidden_states = packing.pack(hidden_states)  # (N, d_model), the real tokens
        all_hidden, all_attn = [], []
        for layer in self.layers:
            if output_hidden_states:
                all_hidden.append(hidden_states)
            hidden_states, weights = layer(hidden_states, mask, packing=packing, **kwargs)
            if output_attentions:
                all_attn.append(weights)
        hidden_states = self.finish(hidden_states)
        if packing is not None:
            hidden_states = packing.unpack(hidden_states)  # (B, S, d_model), zeros at padding
        if output_hidden_states:
            all_hidden.append(hidden_states)
        return BaseModelOutput(
            last_hidden_state=hidden_states,
            hidden_states=tuple(all_hidden) if output_hidden_states else None,
            attentions=tuple(all_attn) if output_attentions else None,
        )


class VanillaTransformerDecoder(_Stack):
    """N identical layers of masked self-attention, encoder-decoder attention and FFN (§3.1)."""

    def __init__(self, config: VanillaTransformerConfig):
        super().__init__(config)
        self.layers = nn.ModuleList([DecoderLayer(config, i) for i in range(config.decoder_layers)])
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        past_key_values: Cache | None = None,
        needed_positions: torch.Tensor | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPastAndCrossAttentions:
        """input_ids (B, T) target prefix, encoder_hidden_states (B, S, d_model) -> (B, T, d_model).

        With `use_cache`, keys and values of past target positions are kept in an
        `EncoderDecoderCache` (`cache`; `past_key_values` is its name before transformers 5.24);
        then only the new positions need to be passed.

        `needed_positions` (B, T) bool marks the positions whose outputs are used (the labelled ones, in
        training). With `config.skip_padding` and no cache, the layers then run only on the positions up to
        each row's last needed one, and on the real source tokens in encoder-decoder attention (`packing.py`);
        the output is zero at the positions after that.
        """
        output_attentions, output_hidden_states = self._output_flags(kwargs)
        cache = resolve_cache(cache, past_key_values, "decoder")
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if self.gradient_checkpointing and self.training:
            use_cache = False  # recomputed layers must not append to the cache twice
        if not use_cache:
            cache = None
        elif cache is None:
            cache = EncoderDecoderCache(DynamicCache(config=self.config), DynamicCache(config=self.config))
        past_length = cache.get_seq_length() if cache is not None else 0
        hidden_states = self.embed(input_ids, inputs_embeds, past_length, "decoder")

        batch_size, seq_len = hidden_states.shape[:2]
        if seq_len == 1 and attention_mask is None and self.config._attn_implementation in ("eager", "sdpa"):
            # One new position without target padding (a decoding step): it may attend to every position
            # so far, so the causal mask (§3.2.3) masks nothing and is not built.
            causal_mask = None
        else:
            if attention_mask is None:
                attention_mask = torch.ones(batch_size, past_length + seq_len, device=hidden_states.device)
            self_attn_cache = cache.self_attention_cache if isinstance(cache, EncoderDecoderCache) else cache
            causal_mask = create_causal_mask(  # the cache is positional: its keyword was renamed in 5.24
                self.config,
                hidden_states,
                attention_mask,
                self_attn_cache,
                position_ids=torch.arange(past_length, past_length + seq_len, device=hidden_states.device)[None],
            )
        cross_mask = None
        if encoder_hidden_states is not None:
            cross_mask = create_bidirectional_mask(
                config=self.config,
                inputs_embeds=hidden_states,
                attention_mask=encoder_attention_mask,
                encoder_hidden_states=encoder_hidden_states,
            )

        packing = encoder_packing = None
        if cache is None and self._may_skip_padding(output_attentions, output_hidden_states):
            packing = target_packing(needed_positions) if needed_positions is not None else None
            if encoder_hidden_states is not None:
                encoder_packing = source_packing(encoder_attention_mask)
        if packing is not None:
            hidden_states = packing.pack(hidden_states)  # (N_t, d_model), up to each row's last needed position
        if encoder_packing is not None:
            encoder_hidden_states = encoder_packing.pack(encoder_hidden_states)  # (N_s, d_model), source tokens

        all_hidden, all_self, all_cross = [], [], []
        for layer in self.layers:
            if output_hidden_states:
                all_hidden.append(hidden_states)
            hidden_states, self_w, cross_w = layer(
                hidden_states,
                causal_mask,
                encoder_hidden_states,  # positional for gradient checkpointing
                encoder_attention_mask=cross_mask,
                cache=cache,
                packing=packing,
                encoder_packing=encoder_packing,
                **kwargs,
            )
            if output_attentions:
                all_self.append(self_w)
                all_cross.append(cross_w)
        hidden_states = self.finish(hidden_states)
        if packing is not None:
            hidden_states = packing.unpack(hidden_states)  # (B, T, d_model), zeros after the last needed position
        if output_hidden_states:
            all_hidden.append(hidden_states)
        return BaseModelOutputWithPastAndCrossAttentions(
            last_hidden_state=hidden_states,
            hidden_states=tuple(all_hidden) if output_hidden_states else None,
            attentions=tuple(all_self) if output_attentions else None,
            cross_attentions=tuple(all_cross) if output_attentions and encoder_hidden_states is not None else None,
            **cache_field(cache),
        )


class VanillaTransformerModel(VanillaTransformerPreTrainedModel):
    """The bare encoder-decoder (§3), returning decoder hidden states.

    With `share_encoder_decoder_embeddings` (default, §3.4) source and target tokens use one
    embedding matrix, `shared`, stored once.
    """

    def __init__(self, config: VanillaTransformerConfig):
        super().__init__(config)
        if config.share_encoder_decoder_embeddings:
            self.shared = nn.Embedding(config.vocab_size, config.d_model, config.pad_token_id)
            self._tied_weights_keys = {
                "encoder.embed_tokens.weight": "shared.weight",
                "decoder.embed_tokens.weight": "shared.weight",
            }
        self.encoder = VanillaTransformerEncoder(config)
        self.decoder = VanillaTransformerDecoder(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.encoder.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        if self.config.share_encoder_decoder_embeddings:
            self.shared = value
            self.decoder.embed_tokens = value
        self.encoder.embed_tokens = value

    def get_encoder(self, modality: str | None = None) -> VanillaTransformerEncoder:
        return self.encoder

    def get_decoder(self) -> VanillaTransformerDecoder:
        return self.decoder

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: tuple | BaseModelOutput | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        past_key_values: Cache | None = None,
        decoder_needed_positions: torch.Tensor | None = None,
        **kwargs,
    ) -> Seq2SeqModelOutput:
        """input_ids (B, S) source, decoder_input_ids (B, T) shifted target -> (B, T, d_model).

        Without decoder inputs only the encoder runs, and the output holds just the encoder's fields
        (so `output[0]` is the source encoding, as `pipeline("feature-extraction")` expects).
        `decoder_needed_positions` (B, T): the decoder's `needed_positions`."""
        if encoder_outputs is None:
            encoder_outputs = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, **kwargs
            )
        elif not isinstance(encoder_outputs, BaseModelOutput):
            encoder_outputs = BaseModelOutput(
                last_hidden_state=encoder_outputs[0],
                hidden_states=encoder_outputs[1] if len(encoder_outputs) > 1 else None,
                attentions=encoder_outputs[2] if len(encoder_outputs) > 2 else None,
            )
        if decoder_input_ids is None and decoder_inputs_embeds is None:
            # Encoder only (what the feature-extraction pipeline asks for): output[0] is the encoding.
            return Seq2SeqModelOutput(
                encoder_last_hidden_state=encoder_outputs.last_hidden_state,
                encoder_hidden_states=encoder_outputs.hidden_states,
                encoder_attentions=encoder_outputs.attentions,
            )
        decoder_outputs = self.decoder(
            input_ids=decoder_input_ids,
            attention_mask=decoder_attention_mask,
            encoder_hidden_states=encoder_outputs.last_hidden_state,
            encoder_attention_mask=attention_mask,
            cache=resolve_cache(cache, past_key_values, "VanillaTransformerModel"),
            inputs_embeds=decoder_inputs_embeds,
            use_cache=use_cache,
            needed_positions=decoder_needed_positions,
            **kwargs,
        )
        return Seq2SeqModelOutput(
            last_hidden_state=decoder_outputs.last_hidden_state,
            **cache_field(output_cache(decoder_outputs)),
            decoder_hidden_states=decoder_outputs.hidden_states,
            decoder_attentions=decoder_outputs.attentions,
            cross_attentions=decoder_outputs.cross_attentions,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
        )


class VanillaTransformerForConditionalGeneration(
    PaperGenerationMixin, ConditionalGenerationMixin, VanillaTransformerPreTrainedModel
):
    """Encoder-decoder with the pre-softmax linear layer (§3.4), loss and `generate()`.

    `lm_head` shares its weight with the embeddings (`tie_word_embeddings`, §3.4); no output bias. The output layer,
    its accessors and the remote-code records of `save_pretrained` are `ConditionalGenerationMixin`'s.
    """

    base_model_class = VanillaTransformerModel

    def __init__(self, config: VanillaTransformerConfig):
        super().__init__(config)
        self._build_model_and_output_layer(config, config.d_model)
        self.post_init()
        self.generation_config = paper_generation_config(config)

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: tuple | BaseModelOutput | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
        label_smoothing: float | None = None,
        past_key_values: Cache | None = None,
        **kwargs,
    ) -> Seq2SeqLMOutput:
        """labels (B, T): target ids ending in `</s>`; -100 and padding are ignored by the loss.
        Returns logits (B, T, V) over the shared vocabulary and, with labels, the loss: the
        label-smoothed cross-entropy with epsilon `label_smoothing` (§5.4 uses 0.1; default 0, the
        plain negative log-likelihood), averaged over target tokens.

        With labels and `config.skip_padding` (the default), the positions after each row's last counted label
        (right padding) are not computed (`packing.py`): their logits are zeros. The loss, its gradients and
        the logits at the other positions are those of the full computation."""
        needed = packing = None
        if labels is not None:
            use_cache = False
            if decoder_input_ids is None and decoder_inputs_embeds is None:
                decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)
            if self.config.skip_padding and not torch.compiler.is_compiling():
                needed = loss_positions(labels, self.config.pad_token_id)
                packing = target_packing(needed)
        outputs = self.model(
            input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            encoder_outputs=encoder_outputs,
            cache=resolve_cache(cache, past_key_values, "VanillaTransformerForConditionalGeneration"),
            inputs_embeds=inputs_embeds,
            decoder_inputs_embeds=decoder_inputs_embeds,
            use_cache=use_cache,
            decoder_needed_positions=needed,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        if packing is not None:  # the pre-softmax layer and the loss on the kept positions, (N, ...)
            hidden_states, labels = packing.pack(hidden_states), packing.pack(labels.to(hidden_states.device))
        logits = onednn_linear(self.lm_head, hidden_states, pre_softmax=True)  # oneDNN when no autograd (onednn.py)
        loss = None
        if labels is not None:
            loss = label_smoothed_nll_loss(
                logits, labels, label_smoothing or 0.0, self.config.pad_token_id, num_items_in_batch
            )
        if packing is not None:
            logits = packing.unpack(logits)  # (B, T, V), zeros after each row's last label
        return Seq2SeqLMOutput(
            loss=loss,
            logits=logits,
            **cache_field(output_cache(outputs)),
            decoder_hidden_states=outputs.decoder_hidden_states,
            decoder_attentions=outputs.decoder_attentions,
            cross_attentions=outputs.cross_attentions,
            encoder_last_hidden_state=outputs.encoder_last_hidden_state,
            encoder_hidden_states=outputs.encoder_hidden_states,
            encoder_attentions=outputs.encoder_attentions,
        )


__all__ = [
    "VanillaTransformerForConditionalGeneration",
    "VanillaTransformerModel",
    "VanillaTransformerPreTrainedModel",
]
