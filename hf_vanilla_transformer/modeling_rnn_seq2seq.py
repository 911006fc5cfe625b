"""The recurrent encoder-decoders the Transformer replaced, as Hugging Face `PreTrainedModel`s.

- `RNNEncoderDecoderForConditionalGeneration`: Sutskever, Vinyals & Le (2014), "Sequence to Sequence Learning with
  Neural Networks". The source reaches the decoder only through the encoder's final state, one fixed-size vector
  per layer.
- `RNNSearchForConditionalGeneration`: Bahdanau, Cho & Bengio (2015), "Neural Machine Translation by Jointly
  Learning to Align and Translate". The decoder reads a bidirectional encoder's annotations through additive
  attention at every step.

Both share the Transformer's interface in this package: the shared BPE tokenizer and its special tokens, one
embedding matrix for source and target tied to the output layer, `forward(labels=..., label_smoothing=...)` with the
same loss, `generate()` with the same decoding defaults (beam 4, GNMT length penalty 0.6, input length + 50; the RNN
papers used beam search without a length penalty), the translation pipeline, Auto-class registration and remote
code. The recurrent state is the generation cache (`recurrent_generation.RecurrentStateCache`).

Where the papers live in the code:

| paper | where |
|---|---|
| Sutskever §2: the encoder's last state initialises the decoder | `rnn_layers.RecurrentEncoder`, `PlainDecoder` |
| Sutskever §3.3: reversed source | `RNNEncoderDecoderConfig.reverse_source`, `RecurrentEncoder` |
| Sutskever §3.4: U(-0.08, 0.08) initialisation | `RNNEncoderDecoderPreTrainedModel._init_weights` |
| Bahdanau §3.2: bidirectional encoder, h_j = [forward; backward] | `RecurrentEncoder(bidirectional=True)` |
| Bahdanau §3.1 eqs. (5)-(6), A.1.2: v_a^T tanh(W_a s_{i-1} + U_a h_j) | `rnn_layers.AdditiveAttention` |
| Bahdanau A.2.2: s_0 = tanh(W_s h_1(backward)), s_i, maxout output | `rnn_layers.AttentionDecoder` |
| Bahdanau B.1: orthogonal recurrent weights, N(0, 0.001^2) W_a, U_a | `RNNSearchPreTrainedModel._init_weights` |

Differences from the papers (shared with the Transformer of this package, or forced by it):

1. Shared source/target BPE vocabulary, tied output layer: the papers had separate word vocabularies (Sutskever
   160k/80k, Bahdanau 30k/30k) and untied softmax weights. The decoders therefore end in the embedding space
   (`PlainDecoder.output_projection`; Bahdanau's maxout output has the embedding size instead of l = 500).
2. Optimiser, schedule, label smoothing, batching: the package's training recipe (Adam with warm-up and inverse
   square-root decay, token-budget batches), not SGD with halving (Sutskever) or Adadelta (Bahdanau); neither paper
   smooths labels. Sutskever's gradient-norm clipping at 5 is `max_grad_norm: 5` in the training configs.
3. Decoding: the Transformer's beam 4 with GNMT length penalty 0.6 (above).
4. `decoder_attention_mask` is accepted and ignored: an RNN decoder reads its inputs left to right, so padding after
   a target's end cannot change the outputs at its real positions.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import Seq2SeqLMOutput, Seq2SeqModelOutput
from transformers.utils import can_return_tuple

from .compat import cache_field, output_cache, resolve_cache
from .conditional_generation import ConditionalGenerationMixin
from .configuration_rnn_seq2seq import RecurrentSeq2SeqConfig, RNNEncoderDecoderConfig, RNNSearchConfig
from .generation import paper_generation_config
from .recurrent_generation import RecurrentGenerationMixin, RecurrentStateCache
from .rnn_layers import AdditiveAttention, AttentionDecoder, PlainDecoder, RecurrentEncoder, RecurrentEncoderOutput
from .seq2seq_loss import label_smoothed_nll_loss

SUTSKEVER_INIT_RANGE = 0.08
"""Sutskever et al. §3.4: "We initialized all of the LSTM's parameters with the uniform distribution between -0.08
and 0.08"."""


class RecurrentSeq2SeqPreTrainedModel(PreTrainedModel):
    """What both recurrent models share as `PreTrainedModel`s."""

    config: RecurrentSeq2SeqConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    _is_stateful = True  # the cache is a state that cannot be rolled back (no assisted decoding)
    _can_compile_fullgraph = False
    _no_split_modules = ["RecurrentEncoder", "PlainDecoder", "AttentionDecoder"]


class RNNEncoderDecoderPreTrainedModel(RecurrentSeq2SeqPreTrainedModel):
    config: RNNEncoderDecoderConfig
    config_class = RNNEncoderDecoderConfig

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Every parameter from U(-0.08, 0.08) (Sutskever et al. §3.4); the padding embedding is zero."""
        if isinstance(module, (nn.Linear, nn.Embedding, nn.RNNBase)):
            for parameter in module.parameters(recurse=False):
                init.uniform_(parameter, -SUTSKEVER_INIT_RANGE, SUTSKEVER_INIT_RANGE)
        if isinstance(module, nn.Embedding):
            _zero_padding_row(module)


class RNNSearchPreTrainedModel(RecurrentSeq2SeqPreTrainedModel):
    config: RNNSearchConfig
    config_class = RNNSearchConfig

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Bahdanau et al. Appendix B.1: recurrent matrices random orthogonal (per gate), W_a and U_a from
        N(0, 0.001^2), v_a and all biases zero, every other weight from N(0, 0.01^2); the padding embedding is zero."""
        if isinstance(module, nn.RNNBase):
            for name, parameter in module.named_parameters(recurse=False):
                if name.startswith("weight_hh"):
                    _orthogonal_per_gate_(parameter, module.hidden_size)
                elif name.startswith("weight_ih"):
                    init.normal_(parameter, std=0.01)
                else:
                    init.zeros_(parameter)
        elif isinstance(module, AdditiveAttention):
            init.normal_(module.W_a, std=0.001)
            init.normal_(module.U_a, std=0.001)
            init.zeros_(module.v_a)
        elif isinstance(module, (nn.Linear, nn.Embedding)):
            init.normal_(module.weight, std=0.01)
            if getattr(module, "bias", None) is not None:
                init.zeros_(module.bias)
            if isinstance(module, nn.Embedding):
                _zero_padding_row(module)


def _zero_padding_row(embedding: nn.Embedding) -> None:
    if embedding.padding_idx is not None and not getattr(embedding.weight, "_is_hf_initialized", False):
        init.zeros_(embedding.weight[embedding.padding_idx])


def _orthogonal_per_gate_(weight: torch.Tensor, hidden_size: int) -> None:
    """Each (H, H) gate block of torch's stacked recurrent matrix (3H x H for a GRU, 4H x H for an LSTM) orthogonal.
    The loaded-weights check is on the parameter: its blocks are views without the flag."""
    if getattr(weight, "_is_hf_initialized", False):
        return
    for block in weight.split(hidden_size, dim=0):
        nn.init.orthogonal_(block)


class _RecurrentSeq2SeqModel(RecurrentSeq2SeqPreTrainedModel):
    """The bare encoder-decoder: returns the decoder's output features (B, T, E), which the output layer of the
    `...ForConditionalGeneration` model turns into logits. Subclasses choose the encoder's direction and the decoder."""

    bidirectional_encoder: bool = False
    decoder_class: type[nn.Module] = PlainDecoder

    def __init__(self, config: RecurrentSeq2SeqConfig):
        super().__init__(config)
        embedding = (config.vocab_size, config.embedding_size, config.pad_token_id)
        if config.share_encoder_decoder_embeddings:
            # One matrix, stored once: `post_init` ties the encoder's and decoder's embeddings to it.
            self.shared = nn.Embedding(*embedding)
            self._tied_weights_keys = {
                "encoder.embed_tokens.weight": "shared.weight",
                "decoder.embed_tokens.weight": "shared.weight",
            }
        self.encoder = RecurrentEncoder(
            config,
            nn.Embedding(*embedding),
            bidirectional=self.bidirectional_encoder,
            reverse_source=getattr(config, "reverse_source", False),
        )
        self.decoder = self.decoder_class(config, nn.Embedding(*embedding))
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.encoder.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        if self.config.share_encoder_decoder_embeddings:
            self.shared = value
            self.decoder.embed_tokens = value
        self.encoder.embed_tokens = value

    def get_encoder(self, modality: str | None = None) -> RecurrentEncoder:
        return self.encoder

    def get_decoder(self) -> nn.Module:
        return self.decoder

    def _decoder_attention_inputs(self, encoder_outputs, attention_mask, cache) -> dict:
        """Extra inputs of the decoder (the attention decoder's mask and keys); none for the plain decoder."""
        return {}

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: tuple | RecurrentEncoderOutput | None = None,
        cache: RecurrentStateCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        past_key_values: RecurrentStateCache | None = None,
        **kwargs,
    ) -> Seq2SeqModelOutput:
        """input_ids (B, S) source, decoder_input_ids (B, T) target prefix starting with `<s>` -> decoder output
        features (B, T, E).

        With `use_cache` the decoder state after the prefix is kept in a `RecurrentStateCache` (`cache`;
        `past_key_values` before transformers 5.24); given a cache that already holds a state, the decoder continues
        from it, so only the new tokens are passed. Without decoder inputs only the encoder runs and the output holds
        just its fields (`output[0]` is the source encoding, as `pipeline("feature-extraction")` expects).
        """
        where = type(self).__name__
        if encoder_outputs is None:
            encoder_outputs = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds
            )
        elif not isinstance(encoder_outputs, RecurrentEncoderOutput):
            if len(encoder_outputs) < 2:
                raise ValueError(f"{where}: encoder_outputs must hold (last_hidden_state, final_state)")
            encoder_outputs = RecurrentEncoderOutput(
                last_hidden_state=encoder_outputs[0], final_state=encoder_outputs[1]
            )
        if decoder_input_ids is None and decoder_inputs_embeds is None:
            return Seq2SeqModelOutput(encoder_last_hidden_state=encoder_outputs.last_hidden_state)

        cache = resolve_cache(cache, past_key_values, where)
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if not use_cache:
            cache = None
        elif cache is None:
            cache = RecurrentStateCache(self.config.decoder_layers)
        elif not isinstance(cache, RecurrentStateCache):
            raise TypeError(
                f"{where}: the cache must be a RecurrentStateCache (the decoder's recurrent state), got "
                f"{type(cache).__name__}; pass none and the model makes one"
            )
        if decoder_inputs_embeds is None:
            decoder_inputs_embeds = self.decoder.embed_tokens(decoder_input_ids)
        has_state = cache is not None and cache.has_state
        state = cache.state() if has_state else self.decoder.initial_state(encoder_outputs)
        features, state, weights = self.decoder(
            decoder_inputs_embeds,
            state,
            encoder_outputs,
            **self._decoder_attention_inputs(encoder_outputs, attention_mask, cache),
        )
        if cache is not None:
            cache.update_state(state, decoder_inputs_embeds.shape[1])
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        return Seq2SeqModelOutput(
            last_hidden_state=features,
            **cache_field(cache),
            # One "layer" of attention with one "head": (B, 1, T, S), the layout transformers uses for attention maps.
            cross_attentions=(weights[:, None],) if output_attentions and weights is not None else None,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
        )


class RNNEncoderDecoderModel(RNNEncoderDecoderPreTrainedModel, _RecurrentSeq2SeqModel):
    """Sutskever et al. (2014): a stacked RNN reads the (reversed) source, and its final state of each layer starts
    the decoder's layer of the same depth (`rnn_layers.PlainDecoder`)."""

    bidirectional_encoder = False
    decoder_class = PlainDecoder


class RNNSearchModel(RNNSearchPreTrainedModel, _RecurrentSeq2SeqModel):
    """Bahdanau et al. (2015): a bidirectional RNN annotates the source, and the decoder attends to the annotations
    at every step (`rnn_layers.AttentionDecoder`)."""

    bidirectional_encoder = True
    decoder_class = AttentionDecoder

    def _decoder_attention_inputs(self, encoder_outputs, attention_mask, cache) -> dict:
        """The padding mask (B, S) and the attention keys U_a h_j (B, S, n'), computed once per sentence."""
        annotations = encoder_outputs.last_hidden_state
        if attention_mask is None:
            mask = torch.ones(annotations.shape[:2], dtype=torch.bool, device=annotations.device)
        else:
            mask = attention_mask.bool()
        keys = cache.attention_keys if cache is not None and cache.has_state else None
        if keys is None:
            keys = self.decoder.attention.project_keys(annotations)
            if cache is not None:
                cache.attention_keys = keys
        return {"encoder_mask": mask, "attention_keys": keys}


class _RecurrentSeq2SeqForConditionalGeneration(ConditionalGenerationMixin, RecurrentSeq2SeqPreTrainedModel):
    """A bare recurrent encoder-decoder with the output layer (tied to the embeddings, `ConditionalGenerationMixin`)
    and the loss; the models below add `generate()` (`RecurrentGenerationMixin`) and their paper's initialisation."""

    base_model_class: type[_RecurrentSeq2SeqModel]

    def __init__(self, config: RecurrentSeq2SeqConfig):
        super().__init__(config)
        self._build_model_and_output_layer(config, config.embedding_size)
        self.post_init()
        self.generation_config = paper_generation_config(config)

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: tuple | RecurrentEncoderOutput | None = None,
        cache: RecurrentStateCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
        label_smoothing: float | None = None,
        past_key_values: RecurrentStateCache | None = None,
        **kwargs,
    ) -> Seq2SeqLMOutput:
        """labels (B, T): target ids ending in `</s>`; -100 and padding are ignored by the loss. Returns logits
        (B, T, V) and, with labels, the label-smoothed cross-entropy with epsilon `label_smoothing` (default 0, the
        plain negative log-likelihood), averaged over target tokens."""
        if labels is not None:
            use_cache = False
            if decoder_input_ids is None and decoder_inputs_embeds is None:
                decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)
        outputs = self.model(
            input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            encoder_outputs=encoder_outputs,
            cache=resolve_cache(cache, past_key_values, type(self).__name__),
            inputs_embeds=inputs_embeds,
            decoder_inputs_embeds=decoder_inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        logits = self.lm_head(outputs.last_hidden_state)
        loss = None
        if labels is not None:
            loss = label_smoothed_nll_loss(
                logits, labels, label_smoothing or 0.0, self.config.pad_token_id, num_items_in_batch
            )
        return Seq2SeqLMOutput(
            loss=loss,
            logits=logits,
            **cache_field(output_cache(outputs)),
            cross_attentions=outputs.cross_attentions,
            encoder_last_hidden_state=outputs.encoder_last_hidden_state,
        )


class RNNEncoderDecoderForConditionalGeneration(
    RecurrentGenerationMixin, _RecurrentSeq2SeqForConditionalGeneration, RNNEncoderDecoderPreTrainedModel
):
    """Sutskever et al. (2014)'s encoder-decoder without attention, with the output layer, loss and `generate()`."""

    config_class = RNNEncoderDecoderConfig
    base_model_class = RNNEncoderDecoderModel


class RNNSearchForConditionalGeneration(
    RecurrentGenerationMixin, _RecurrentSeq2SeqForConditionalGeneration, RNNSearchPreTrainedModel
):
    """Bahdanau et al. (2015)'s RNNsearch, with the output layer, loss and `generate()`; `output_attentions=True`
    returns the alignment weights alpha as `cross_attentions` (Bahdanau et al. Fig. 3)."""

    config_class = RNNSearchConfig
    base_model_class = RNNSearchModel


__all__ = [
    "RNNEncoderDecoderForConditionalGeneration",
    "RNNEncoderDecoderModel",
    "RNNEncoderDecoderPreTrainedModel",
    "RNNSearchForConditionalGeneration",
    "RNNSearchModel",
    "RNNSearchPreTrainedModel",
]
