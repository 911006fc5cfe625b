"""hf-vanilla-transformer: the Transformer of "Attention Is All You Need" (Vaswani et al., 2017)
as a Hugging Face model. Importing the package registers it with the Auto classes and pipelines."""

from .configuration_vanilla_transformer import VanillaTransformerConfig
from .modeling_vanilla_transformer import (
    VanillaTransformerForConditionalGeneration,
    VanillaTransformerModel,
    VanillaTransformerPreTrainedModel,
)
from .pipeline_translation import TranslationPipeline
from .registration import register
from .tokenization import train_tokenizer

register()

__version__ = "0.1.0"

__all__ = [
    "TranslationPipeline",
    "VanillaTransformerConfig",
    "VanillaTransformerForConditionalGeneration",
    "VanillaTransformerModel",
    "VanillaTransformerPreTrainedModel",
    "register",
    "train_tokenizer",
]
