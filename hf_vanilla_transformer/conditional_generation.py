"""What every `...ForConditionalGeneration` of this package shares, the Transformer and the recurrent models alike.

- The output layer: a bias-free linear map to the vocabulary whose weight is the target embedding (§3.4 "we share
  the same weight matrix between the two embedding layers and the pre-softmax linear transformation"), or the one
  matrix shared by source, target and output with `share_encoder_decoder_embeddings`.
- The accessors transformers' generation, resizing and tying use, and the teacher-forcing decoder inputs.
- `save_pretrained`'s records for remote-code loading: the bare encoder-decoder as `AutoModel` (the
  feature-extraction pipeline uses it) and the translation pipeline (`CUSTOM_PIPELINES`) in `config.json`.

Its own small file, as `seq2seq_loss.py`: remote code copies a modeling file and what it imports relatively, and a
saved recurrent model should not carry the Transformer's code along.
"""

from __future__ import annotations

import torch
from torch import nn

from .pipeline_translation import TranslationPipeline  # imported here so save_pretrained ships its file
from .seq2seq_loss import shift_tokens_right

# Written into config.json on save: `pipeline("translation", model=..., trust_remote_code=True)` finds it.
CUSTOM_PIPELINES = {
    "translation": {
        "impl": f"pipeline_translation.{TranslationPipeline.__name__}",
        "pt": ["AutoModelForSeq2SeqLM"],
        "type": "text",
    }
}


class ConditionalGenerationMixin:
    """The output layer, accessors and save records of an encoder-decoder LM; mixed into a `PreTrainedModel` whose
    bare encoder-decoder (`base_model_class`) is `self.model`, with `get_encoder()`/`get_decoder()`, `shared`,
    `encoder.embed_tokens` and `decoder.embed_tokens`."""

    base_model_class: type[nn.Module]
    """The bare encoder-decoder (without output layer) this model holds as `self.model`."""
    _tied_weights_keys = {"lm_head.weight": "model.decoder.embed_tokens.weight"}

    def _build_model_and_output_layer(self, config, output_width: int) -> None:
        """`self.model` and `self.lm_head` (`output_width` -> vocabulary, no bias), and which weights are tied."""
        self.model = self.base_model_class(config)
        if config.share_encoder_decoder_embeddings:
            self._tied_weights_keys = {
                "lm_head.weight": "model.shared.weight",
                "model.encoder.embed_tokens.weight": "model.shared.weight",
                "model.decoder.embed_tokens.weight": "model.shared.weight",
            }
        self.lm_head = nn.Linear(output_width, config.vocab_size, bias=False)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Also records, for remote-code loading, the bare model (`AutoModel`, used by the feature-extraction
        pipeline) and the translation pipeline in `config.json`; their code files are copied with this one's."""
        if self._auto_class is not None:
            auto_map = dict(getattr(self.config, "auto_map", None) or {})
            module = type(self.model).__module__.rsplit(".", 1)[-1]  # the modeling file, as shipped with the model
            auto_map["AutoModel"] = f"{module}.{type(self.model).__name__}"
            self.config.auto_map = auto_map
        self.config.custom_pipelines = CUSTOM_PIPELINES
        return super().save_pretrained(save_directory, *args, **kwargs)

    def get_encoder(self, modality: str | None = None) -> nn.Module:
        return self.model.get_encoder()

    def get_decoder(self) -> nn.Module:
        return self.model.get_decoder()

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.lm_head = new_embeddings

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)
