"""Registration with transformers' Auto classes and pipeline registry.

`register()` runs when the package is imported. It registers the classes in-process
(`AutoConfig`, `AutoModel`, `AutoModelForSeq2SeqLM`) and marks them for `auto_map`, so that
`save_pretrained` / `push_to_hub` copy this package's code next to the weights and a fresh
environment can load the folder with `trust_remote_code=True`.
"""

from __future__ import annotations

from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_vanilla_transformer import VanillaTransformerConfig
from .modeling_vanilla_transformer import VanillaTransformerForConditionalGeneration, VanillaTransformerModel
from .pipeline_translation import TranslationPipeline

_registered = False


def register() -> None:
    """Idempotent: safe to call more than once."""
    global _registered
    if _registered:
        return
    model_type = VanillaTransformerConfig.model_type
    AutoConfig.register(model_type, VanillaTransformerConfig, exist_ok=True)
    AutoModel.register(VanillaTransformerConfig, VanillaTransformerModel, exist_ok=True)
    AutoModelForSeq2SeqLM.register(VanillaTransformerConfig, VanillaTransformerForConditionalGeneration, exist_ok=True)
    VanillaTransformerConfig.register_for_auto_class()
    VanillaTransformerModel.register_for_auto_class("AutoModel")
    VanillaTransformerForConditionalGeneration.register_for_auto_class("AutoModelForSeq2SeqLM")
    PIPELINE_REGISTRY.register_pipeline(
        "translation",
        pipeline_class=TranslationPipeline,
        pt_model=AutoModelForSeq2SeqLM,
        type="text",
    )
    _registered = True
