"""hf-vanilla-transformer: the Transformer of "Attention Is All You Need" (Vaswani et al., 2017)
as a Hugging Face model, and the recurrent encoder-decoders it replaced (Sutskever et al. 2014;
Bahdanau et al. 2015). Importing the package registers them with the Auto classes and pipelines."""

from .configuration_rnn_seq2seq import RNNEncoderDecoderConfig, RNNSearchConfig
from .configuration_vanilla_transformer import VanillaTransformerConfig
from .modeling_rnn_seq2seq import (
    RNNEncoderDecoderForConditionalGeneration,
    RNNEncoderDecoderModel,
    RNNSearchForConditionalGeneration,
    RNNSearchModel,
)
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
    "RNNEncoderDecoderConfig",
    "RNNEncoderDecoderForConditionalGeneration",
    "RNNEncoderDecoderModel",
    "RNNSearchConfig",
    "RNNSearchForConditionalGeneration",
    "RNNSearchModel",
    "TranslationPipeline",
    "VanillaTransformerConfig",
    "VanillaTransformerForConditionalGeneration",
    "VanillaTransformerModel",
    "VanillaTransformerPreTrainedModel",
    "register",
    "train_tokenizer",
]
