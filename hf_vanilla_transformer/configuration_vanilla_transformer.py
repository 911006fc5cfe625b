"""Configuration of the vanilla Transformer (Vaswani et al., 2017, "Attention Is All You Need").

Field names follow transformers' Marian/BART configs so that tooling written for those models
(Trainer, generation, the cache sizing in `get_text_config`) works unchanged. Every option that
departs from the paper is a named field whose default is the paper's choice.

Presets (`PRESETS`, `VanillaTransformerConfig.from_preset(name, **overrides)`): the paper's Table 3
models, a CPU-sized one, and a tiny one for tests and toy tasks (runs in milliseconds):

| preset  | d_model | layers | heads | d_ff | dropout | params (37k vocab) |
|---------|---------|--------|-------|------|---------|--------------------|
| `base`  | 512     | 6+6    | 8     | 2048 | 0.1     | ~63M               |
| `big`   | 1024    | 6+6    | 16    | 4096 | 0.3     | ~214M              |
| `small` | 256     | 3+3    | 4     | 1024 | 0.1     | CPU training       |
| `tiny`  | 32      | 2+2    | 4     | 64   | 0.0     | tests, toy tasks   |

Decoding settings (beam size, length penalty and its GNMT form, maximum length) are not config fields:
they live in the model's `generation_config` (`generation.py`). Label smoothing is a training choice:
`forward(label_smoothing=...)`. Configs saved by earlier versions with `length_penalty_form` or
`label_smoothing` fields still load (unknown fields become plain attributes; the first is still honoured
by `generate()` when the generation config does not set it, the second is ignored).
"""

from __future__ import annotations

# First: it checks the installed transformers release, before anything that may fail on an untested one.
from .compat import unwrap_strict_validation_errors  # isort: skip

from typing import Literal

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

POSITION_EMBEDDING_TYPES = ("sinusoidal", "learned")
SINUSOIDAL_LAYOUTS = ("interleaved", "concat")
LAYER_NORM_POSITIONS = ("post", "pre")
ACTIVATIONS = ("relu", "gelu")
ATTENTION_SCORES = ("scaled_dot_product", "dot_product", "additive")


@strict
class VanillaTransformerConfig(PreTrainedConfig):
    r"""Hyper-parameters of the encoder-decoder Transformer (paper §3, Table 3).

    Args:
        vocab_size: size of the shared source/target BPE vocabulary (§3.4, §5.1).
        d_model: model width `d_model` (§3, 512 in the base model).
        encoder_layers / decoder_layers: `N`, the number of stacked layers (§3.1, 6).
        encoder_attention_heads / decoder_attention_heads: `h`, heads per attention (§3.2.2, 8).
        head_dim: per-head key/value size `d_k = d_v`; `None` means `d_model / h` (§3.2.2) and is
            resolved to that number when both stacks have the same `h` (transformers' generic code,
            such as cache shapes and export, reads `config.head_dim` as an int, as `LlamaConfig`
            resolves it). Table 3 (rows A, B) varies it independently of `d_model`.
        attention_bias: biases in the Q/K/V/output projections. The paper's projection matrices
            W^Q, W^K, W^V, W^O have none (§3.2.2, as in tensor2tensor); fairseq, Marian and
            `torch.nn.MultiheadAttention` add them.
        attention_score: how a query is compared with a key (§3.2.1): `"scaled_dot_product"` (the paper,
            `q·k / sqrt(d_k)`), `"dot_product"` (`q·k`, unscaled) or `"additive"` (`w_v^T tanh(W_q q + W_k k)`,
            Bahdanau et al. 2015, per head; computed by eager attention whatever kernel is requested).
        encoder_ffn_dim / decoder_ffn_dim: inner size `d_ff` of the position-wise FFN (§3.3, 2048).
        activation_function: FFN non-linearity; the paper uses `"relu"` (§3.3).
        dropout: `P_drop` on every sub-layer output and on the embedding sums (§5.4, 0.1).
        attention_dropout: dropout on the attention probabilities (not in the paper; tensor2tensor
            and fairseq offer it). 0 by default.
        activation_dropout: dropout after the FFN non-linearity (not in the paper). 0 by default.
        max_position_embeddings: longest sequence the position table covers.
        position_embedding_type: `"sinusoidal"` (§3.5) or `"learned"` (Table 3 row E).
        sinusoidal_layout: `"interleaved"` puts sin at even and cos at odd dimensions exactly as the
            §3.5 formula; `"concat"` puts all sines then all cosines (tensor2tensor, fairseq, Marian).
        layer_norm_position: `"post"` is the paper's `LayerNorm(x + Dropout(Sublayer(x)))` (§3.1);
            `"pre"` is `x + Dropout(Sublayer(LayerNorm(x)))` with a final LayerNorm per stack.
        layer_norm_eps: epsilon of every LayerNorm.
        scale_embedding: multiply token embeddings by `sqrt(d_model)` (§3.4).
        share_encoder_decoder_embeddings: one embedding matrix for source and target (§3.4).
        tie_word_embeddings: tie the pre-softmax projection to the (decoder) embedding (§3.4).
        init_std: std of the normal init used only for learned position embeddings.
        skip_padding: compute the position-wise layers (projections, FFN, layer norms, residuals, and with
            labels the pre-softmax layer and the loss) on real tokens only: source padding, and target
            positions after each row's last labelled one (`packing.py`). The same loss, gradients and outputs
            at those positions, up to float rounding; outputs at the positions left out are zeros.
            Not a modelling choice: `False` computes every padded position, as the paper's code and
            transformers' Marian do.
    """

    model_type = "vanilla_transformer"
    keys_to_ignore_at_inference = ["cache", "past_key_values"]  # the name before transformers 5.24
    attribute_map = {
        "num_attention_heads": "encoder_attention_heads",
        "hidden_size": "d_model",
        "num_hidden_layers": "encoder_layers",
    }

    vocab_size: int = 37000
    d_model: int = 512
    encoder_layers: int = 6
    decoder_layers: int = 6
    encoder_attention_heads: int = 8
    decoder_attention_heads: int = 8
    head_dim: int | None = None
    attention_bias: bool = False
    attention_score: Literal["scaled_dot_product", "dot_product", "additive"] = "scaled_dot_product"
    encoder_ffn_dim: int = 2048
    decoder_ffn_dim: int = 2048
    activation_function: Literal["relu", "gelu"] = "relu"
    dropout: float | int = 0.1
    attention_dropout: float | int = 0.0
    activation_dropout: float | int = 0.0
    max_position_embeddings: int = 1024
    position_embedding_type: Literal["sinusoidal", "learned"] = "sinusoidal"
    sinusoidal_layout: Literal["interleaved", "concat"] = "interleaved"
    layer_norm_position: Literal["post", "pre"] = "post"
    layer_norm_eps: float = 1e-5
    scale_embedding: bool = True
    share_encoder_decoder_embeddings: bool = True
    tie_word_embeddings: bool = True
    init_std: float = 0.02
    skip_padding: bool = True
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    decoder_start_token_id: int | None = 1
    use_cache: bool = True
    is_encoder_decoder: bool = True
    is_decoder: bool = False

    def __post_init__(self, **kwargs):
        heads = {self.encoder_attention_heads, self.decoder_attention_heads}
        if self.head_dim is None and len(heads) == 1 and self.d_model % self.encoder_attention_heads == 0:
            self.head_dim = self.d_model // self.encoder_attention_heads
        super().__post_init__(**kwargs)

    # ------------------------------------------------------------------ validation
    def validate_architecture(self):
        """Reject impossible hyper-parameters with a message naming the offending value."""
        for name in (
            "vocab_size",
            "d_model",
            "encoder_attention_heads",
            "decoder_attention_heads",
            "encoder_ffn_dim",
            "decoder_ffn_dim",
            "max_position_embeddings",
        ):
            value = getattr(self, name)
            if value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        for name in ("encoder_layers", "decoder_layers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.head_dim is not None and self.head_dim < 1:
            raise ValueError(f"head_dim must be a positive integer or None, got {self.head_dim}")
        for name in ("encoder_attention_heads", "decoder_attention_heads"):
            heads = getattr(self, name)
            if self.head_dim is None and self.d_model % heads != 0:
                raise ValueError(
                    f"d_model ({self.d_model}) must be divisible by {name} ({heads}) unless head_dim is set explicitly"
                )
        if self.position_embedding_type == "sinusoidal" and self.d_model % 2 != 0:
            raise ValueError(f"sinusoidal positional encoding needs an even d_model, got {self.d_model}")
        for name in ("dropout", "attention_dropout", "activation_dropout"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        if self.layer_norm_eps <= 0:
            raise ValueError(f"layer_norm_eps must be > 0, got {self.layer_norm_eps}")

    def validate_options(self):
        """Reject unknown option strings (also when set after construction)."""
        for name, allowed in (
            ("position_embedding_type", POSITION_EMBEDDING_TYPES),
            ("sinusoidal_layout", SINUSOIDAL_LAYOUTS),
            ("layer_norm_position", LAYER_NORM_POSITIONS),
            ("activation_function", ACTIVATIONS),
            ("attention_score", ATTENTION_SCORES),
        ):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")

    @property
    def encoder_head_dim(self) -> int:
        return self.head_dim or self.d_model // self.encoder_attention_heads

    @property
    def decoder_head_dim(self) -> int:
        return self.head_dim or self.d_model // self.decoder_attention_heads

    # ------------------------------------------------------------------ presets
    @classmethod
    def from_preset(cls, name: str, **overrides) -> VanillaTransformerConfig:
        """The preset `name` (see `PRESETS`) with `overrides` applied, e.g. `from_preset("small", vocab_size=8000)`."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    @classmethod
    def base(cls, **overrides) -> VanillaTransformerConfig:
        """Transformer (base model), paper Table 3: d_model 512, 6+6 layers, 8 heads, d_ff 2048, P_drop 0.1."""
        return cls.from_preset("base", **overrides)

    @classmethod
    def big(cls, **overrides) -> VanillaTransformerConfig:
        """Transformer (big), paper Table 3: d_model 1024, 6+6 layers, 16 heads, d_ff 4096, P_drop 0.3."""
        return cls.from_preset("big", **overrides)

    @classmethod
    def small(cls, **overrides) -> VanillaTransformerConfig:
        """CPU-sized model for small corpora (e.g. Multi30k): d_model 256, 3+3 layers, 4 heads, d_ff 1024."""
        return cls.from_preset("small", **overrides)

    @classmethod
    def tiny(cls, **overrides) -> VanillaTransformerConfig:
        """A model that runs in milliseconds, for tests and toy tasks: d_model 32, 2+2 layers, 4 heads, d_ff 64."""
        return cls.from_preset("tiny", **overrides)


PRESETS: dict[str, dict] = {
    "base": dict(
        d_model=512,
        encoder_layers=6,
        decoder_layers=6,
        encoder_attention_heads=8,
        decoder_attention_heads=8,
        encoder_ffn_dim=2048,
        decoder_ffn_dim=2048,
        dropout=0.1,
    ),
    "big": dict(
        d_model=1024,
        encoder_layers=6,
        decoder_layers=6,
        encoder_attention_heads=16,
        decoder_attention_heads=16,
        encoder_ffn_dim=4096,
        decoder_ffn_dim=4096,
        dropout=0.3,
    ),
    "small": dict(
        d_model=256,
        encoder_layers=3,
        decoder_layers=3,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=1024,
        decoder_ffn_dim=1024,
        dropout=0.1,
        max_position_embeddings=512,
    ),
    "tiny": dict(
        vocab_size=64,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        dropout=0.0,
        max_position_embeddings=64,
    ),
}
"""Named sizes: the paper's Table 3 `base` and `big`, the CPU-sized `small`, and `tiny` for tests."""

unwrap_strict_validation_errors(VanillaTransformerConfig)

__all__ = ["PRESETS", "VanillaTransformerConfig"]
