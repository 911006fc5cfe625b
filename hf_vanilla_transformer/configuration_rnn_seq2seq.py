"""Configurations of the two recurrent encoder-decoders the Transformer replaced.

- `RNNEncoderDecoderConfig` (`model_type="rnn_encoder_decoder"`): Sutskever, Vinyals & Le (2014), "Sequence to
  Sequence Learning with Neural Networks". A stacked RNN reads the (reversed) source; its final state, one fixed-size
  vector per layer, is the decoder's initial state and the only way the source reaches the decoder.
- `RNNSearchConfig` (`model_type="rnn_search"`): Bahdanau, Cho & Bengio (2015), "Neural Machine Translation by Jointly
  Learning to Align and Translate". A bidirectional RNN writes one annotation per source token, and the decoder reads
  them at every step through additive attention.

Both use the shared tokenizer's conventions (`<pad>` 0, `<s>` 1 as the decoder start, `</s>` 2), one embedding matrix
for source and target, and an output layer tied to it, like `VanillaTransformerConfig`. Cells are GRUs (Cho et al.
2014, the RNNsearch paper's) or LSTMs (Hochreiter & Schmidhuber 1997, Sutskever et al.'s): `cell_type`.

Presets (`from_preset(name, **overrides)`): `tiny` for tests and toy tasks, `small` for CPU training on Multi30k, and
`paper`, the sizes of the paper each model comes from (Sutskever et al. §3.4: 4 layers of 1000 LSTM cells, 1000-d
embeddings; Bahdanau et al. Appendix A.2: 1000 hidden units, 620-d embeddings).

Decoding settings are not config fields: the models use the Transformer's `generation_config` (§6.1 of Vaswani et al.:
beam 4, GNMT length penalty 0.6, input length + 50), so that all models of this package are decoded alike.
"""

from __future__ import annotations

# First: it checks the installed transformers release, before anything that may fail on an untested one.
from .compat import unwrap_strict_validation_errors  # isort: skip

import sys
from typing import Literal

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

CELL_TYPES = ("gru", "lstm")


@strict
class RecurrentSeq2SeqConfig(PreTrainedConfig):
    r"""What both recurrent encoder-decoders share (not registered itself: use one of the two subclasses).

    Args:
        vocab_size: size of the shared source/target vocabulary.
        cell_type: `"gru"` (Cho et al. 2014, §2.3) or `"lstm"` (Hochreiter & Schmidhuber 1997).
        embedding_size: size of the word embeddings (`m` in Bahdanau et al.; 620 there, 1000 in Sutskever et al.).
        hidden_size: units per RNN layer (and direction) (`n`, 1000 in both papers).
        encoder_layers / decoder_layers: stacked RNN layers.
        dropout: dropout on the embeddings, between stacked layers and on the decoder's output features. Neither paper
            uses dropout (Zaremba et al. 2014 introduced it for LSTMs); 0 by default.
        share_encoder_decoder_embeddings: one embedding matrix for source and target tokens (the shared BPE
            vocabulary), stored once.
        tie_word_embeddings: the output layer's weight is the (target) embedding matrix (Press & Wolf 2017); the
            decoder therefore projects its output features to `embedding_size`.
    """

    keys_to_ignore_at_inference = ["cache", "past_key_values"]
    # The generation cache is sized from `get_text_config(decoder=True)`, which renames `decoder_layers` to
    # `num_hidden_layers`: the decoder's layers are the ones whose state is cached.
    attribute_map = {"num_hidden_layers": "decoder_layers"}

    vocab_size: int = 8000
    cell_type: Literal["gru", "lstm"] = "gru"
    embedding_size: int = 256
    hidden_size: int = 256
    encoder_layers: int = 1
    decoder_layers: int = 1
    dropout: float | int = 0.0
    share_encoder_decoder_embeddings: bool = True
    tie_word_embeddings: bool = True
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    decoder_start_token_id: int | None = 1
    use_cache: bool = True
    is_encoder_decoder: bool = True
    is_decoder: bool = False

    @property
    def max_position_embeddings(self) -> int:
        """An RNN has no position table, so no input is too long for it. The package's tools bound the Transformer's
        inputs (and `generate()`'s output) by `max_position_embeddings`; for these models the bound never binds."""
        return sys.maxsize

    def validate_architecture(self):
        """Reject impossible hyper-parameters with a message naming the offending value."""
        for name in ("vocab_size", "embedding_size", "hidden_size", "encoder_layers", "decoder_layers"):
            value = getattr(self, name)
            if value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.cell_type not in CELL_TYPES:
            raise ValueError(f"cell_type must be one of {CELL_TYPES}, got {self.cell_type!r}")
        if self.pad_token_id is None or self.decoder_start_token_id is None:
            raise ValueError(
                f"pad_token_id and decoder_start_token_id must be set, got {self.pad_token_id} and "
                f"{self.decoder_start_token_id}: padding is skipped by the encoder and decoding starts from the latter"
            )

    @classmethod
    def from_preset(cls, name: str, **overrides):
        """The preset `name` (see the class's `PRESETS`) with `overrides` applied."""
        if name not in cls.PRESETS:
            raise ValueError(f"unknown preset {name!r} for {cls.__name__}; choose one of {sorted(cls.PRESETS)}")
        return cls(**{**cls.PRESETS[name], **overrides})

    PRESETS = {}  # name -> field values; each subclass sets its own below (unannotated: not a config field)


@strict
class RNNEncoderDecoderConfig(RecurrentSeq2SeqConfig):
    r"""The RNN encoder-decoder without attention of Sutskever et al. (2014).

    The encoder's final state of each layer (for an LSTM: `(h, c)`) becomes the initial state of the decoder's layer
    of the same depth, so `encoder_layers` must equal `decoder_layers`. We follow Sutskever et al. rather than Cho et
    al. (2014, who also feed the summary vector `c` to every decoder step and to the output): here the decoder sees the
    source *only* through its initial state, the pure fixed-size-vector bottleneck.

    Args (besides `RecurrentSeq2SeqConfig`'s):
        reverse_source: read each source sentence backwards (Sutskever et al. §3.3: "we found it extremely valuable
            to reverse the order of the words of the input sentence", test BLEU 25.9 -> 30.6), so that the first
            source words are close to the first target words.
    """

    model_type = "rnn_encoder_decoder"

    cell_type: Literal["gru", "lstm"] = "lstm"
    reverse_source: bool = True

    def validate_stack_handover(self):
        if self.encoder_layers != self.decoder_layers:
            raise ValueError(
                f"encoder_layers ({self.encoder_layers}) must equal decoder_layers ({self.decoder_layers}): each "
                "encoder layer's final state is the initial state of the decoder layer of the same depth (Sutskever §2)"
            )


@strict
class RNNSearchConfig(RecurrentSeq2SeqConfig):
    r"""RNNsearch, the attention-based encoder-decoder of Bahdanau et al. (2015).

    The encoder is a bidirectional RNN (§3.2): the annotation of source word j is `h_j = [h_j(forward); h_j(backward)]`
    of the top layer. The decoder state starts at `s_0 = tanh(W_s h_1(backward))` (Appendix A.2.2) and at each step
    reads a context vector `c_i` from the annotations through the additive alignment model `a(s_{i-1}, h_j) =
    v_a^T tanh(W_a s_{i-1} + U_a h_j)` (§3.1, Appendix A.1.2).

    Args (besides `RecurrentSeq2SeqConfig`'s):
        attention_size: `n'`, the hidden size of the alignment model (1000 in the paper).
    """

    model_type = "rnn_search"

    attention_size: int = 256

    def validate_attention(self):
        if self.attention_size < 1:
            raise ValueError(f"attention_size must be a positive integer, got {self.attention_size}")


RNNEncoderDecoderConfig.PRESETS = {
    "tiny": dict(vocab_size=64, embedding_size=32, hidden_size=32, encoder_layers=1, decoder_layers=1),
    "small": dict(embedding_size=256, hidden_size=512, encoder_layers=2, decoder_layers=2),
    # Sutskever et al. §3.4: "deep LSTMs with 4 layers, with 1000 cells at each layer and 1000 dimensional word
    # embeddings" (their vocabularies were 160k source / 80k target words, not shared).
    "paper": dict(cell_type="lstm", embedding_size=1000, hidden_size=1000, encoder_layers=4, decoder_layers=4),
}
RNNSearchConfig.PRESETS = {
    "tiny": dict(vocab_size=64, embedding_size=32, hidden_size=32, attention_size=32),
    "small": dict(embedding_size=256, hidden_size=256, attention_size=256),
    # Bahdanau et al. Appendix A.2 / B.2: n = n' = 1000 hidden units, m = 620-d embeddings, one layer of GRU-like
    # gated units in each direction and in the decoder.
    "paper": dict(cell_type="gru", embedding_size=620, hidden_size=1000, attention_size=1000),
}

for _config_class in (RecurrentSeq2SeqConfig, RNNEncoderDecoderConfig, RNNSearchConfig):
    unwrap_strict_validation_errors(_config_class)

__all__ = ["CELL_TYPES", "RNNEncoderDecoderConfig", "RNNSearchConfig", "RecurrentSeq2SeqConfig"]
