"""Registration with transformers' Auto classes and pipeline registry.

`register()` runs when the package is imported. It registers the classes in-process
(`AutoConfig`, `AutoModel`, `AutoModelForSeq2SeqLM`) and marks them for `auto_map`, so that
`save_pretrained` / `push_to_hub` copy this package's code next to the weights and a fresh
environment can load the folder with `trust_remote_code=True`.
"""

from __future__ import annotations

from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_rnn_seq2seq import RNNEncoderDecoderConfig, RNNSearchConfig
from .configuration_vanilla_transformer import VanillaTransformerConfig
from .modeling_rnn_seq2seq import (
    RNNEncoderDecoderForConditionalGeneration,
    RNNEncoderDecoderModel,
    RNNSearchForConditionalGeneration,
    RNNSearchModel,
)
from .modeling_vanilla_transformer import VanillaTransformerForConditionalGeneration, VanillaTransformerModel
from .pipeline_translation import TranslationPipeline

MODELS = (
    (VanillaTransformerConfig, VanillaTransformerModel, VanillaTransformerForConditionalGeneration),
    (RNNEncoderDecoderConfig, RNNEncoderDecoderModel, RNNEncoderDecoderForConditionalGeneration),
    (RNNSearchConfig, RNNSearchModel, RNNSearchForConditionalGeneration),
)
"""(config, bare model, model with the output layer) of every model type of the package."""

_registered = False


def register() -> None:
    """Idempotent: safe to call more than once."""
    global _registered
    if _registered:
        return
    for config_class, model_class, lm_class in MODELS:
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoModel.register(config_class, model_class, exist_ok=True)
        AutoModelForSeq2SeqLM.register(config_class, lm_class, exist_ok=True)
        config_class.register_for_auto_class()
        model_class.register_for_auto_class("AutoModel")
        lm_class.register_for_auto_class("AutoModelForSeq2SeqLM")
    PIPELINE_REGISTRY.register_pipeline(
        "translation",
        pipeline_class=TranslationPipeline,
        pt_model=AutoModelForSeq2SeqLM,
        type="text",
    )
    _registered = True
