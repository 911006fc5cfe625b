"""Convert a trained model to transformers' `MarianMTModel`, the architecture that fast inference
engines (CTranslate2, Marian NMT, ONNX tool-chains) already know.

Marian is the same network up to options (tests/test_marian_reference.py). How each of ours maps:

- post-LN, ReLU or GELU, `scale_embedding`: the same options.
- `attention_bias=False` (the default): Marian's projection biases are zeros. Exact.
- `sinusoidal_layout="interleaved"` (the default): Marian's table is `"concat"`; the same network
  with its d_model axes reordered (below). Exact.
- shared / tied embeddings, either way: `share_encoder_decoder_embeddings`, `tie_word_embeddings`.
- decoder start token `<s>` and the pad/bos/eos ids are copied into Marian's config (Marian's own
  models start decoding from `<pad>`); no output bias: `final_logits_bias` stays zero.
- Refused with a `ValueError` naming the option, because Marian cannot express them: pre-LN,
  learned positions, `head_dim` other than d_model / heads, `layer_norm_eps` other than 1e-5
  (Marian's LayerNorms use torch's default), and any `attention_score` but the paper's scaled dot
  product (Marian always scales by 1 / sqrt(d_k) and has no additive scores).

Reordering the residual stream. The interleaved and concat tables hold the same sin/cos features in
a different order: `PE_concat = PE_interleaved[:, order]` with `order = [0, 2, 4, ..., 1, 3, 5, ...]`.
Every operation that touches the d_model axis (embedding lookup + PE, residual additions, LayerNorm,
and the linear maps into and out of the residual stream) commutes with a fixed reordering of that
axis, provided every weight is reordered alike: embedding and `lm_head` columns, the input columns
of the q/k/v projections and `fc1`, the output rows (and biases) of `out_proj` and `fc2`, and the
LayerNorm gains and biases. LayerNorm's mean and variance do not depend on the order. The Marian
model then computes exactly our hidden states with their axes reordered, and the same logits.

Decoding. Marian (and CTranslate2) rank finished beams with transformers' length penalty
`log p / len**alpha`; the paper's GNMT penalty (`length_penalty_form="gnmt"`, our default) cannot
be expressed there, so the converted model decodes like ours with `length_penalty_form="hf"`. Our
per-sentence limit of input length + 50 tokens is not expressible either: the converted model's
`generation_config.max_length` is `max_position_embeddings`; pass `max_new_tokens` to bound it.

Only torch and transformers are needed.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch
from transformers import GenerationConfig, MarianConfig, MarianMTModel, PreTrainedTokenizerBase

from .configuration_vanilla_transformer import VanillaTransformerConfig
from .modeling_vanilla_transformer import VanillaTransformerForConditionalGeneration

MARIAN_LAYER_NORM_EPS = 1e-5  # Marian builds nn.LayerNorm(d_model) with torch's default eps

# For each kind of weight (matched on the end of its name), the axes that run over d_model.
# Every weight of the model must match exactly one entry: a new kind of weight fails loudly.
RESIDUAL_AXES: dict[str, tuple[int, ...]] = {
    "embed_tokens.weight": (1,),
    "shared.weight": (1,),
    "lm_head.weight": (1,),
    "q_proj.weight": (1,),
    "k_proj.weight": (1,),
    "v_proj.weight": (1,),
    "fc1.weight": (1,),
    "q_proj.bias": (),
    "k_proj.bias": (),
    "v_proj.bias": (),
    "fc1.bias": (),
    "out_proj.weight": (0,),
    "out_proj.bias": (0,),
    "fc2.weight": (0,),
    "fc2.bias": (0,),
    "layer_norm.weight": (0,),  # self_attn_, encoder_attn_ and final_layer_norm
    "layer_norm.bias": (0,),
}


def check_marian_compatible(config: VanillaTransformerConfig) -> None:
    """Raise `ValueError` naming the first option Marian cannot express."""
    if config.layer_norm_position != "post":
        raise ValueError(
            f"layer_norm_position={config.layer_norm_position!r} cannot be converted to Marian: "
            "MarianMTModel only has post-LN layers (LayerNorm(x + Sublayer(x))) and no final LayerNorm"
        )
    if config.position_embedding_type != "sinusoidal":
        raise ValueError(
            f"position_embedding_type={config.position_embedding_type!r} cannot be converted to Marian: "
            "MarianMTModel's positions are a fixed sinusoidal table"
        )
    for stack in ("encoder", "decoder"):
        heads, head_dim = getattr(config, f"{stack}_attention_heads"), getattr(config, f"{stack}_head_dim")
        if heads * head_dim != config.d_model:
            raise ValueError(
                f"head_dim={head_dim} with {stack}_attention_heads={heads} cannot be converted to Marian: "
                f"MarianMTModel's heads have d_model / heads = {config.d_model / heads:g} dimensions"
            )
    if config.attention_score != "scaled_dot_product":
        raise ValueError(
            f"attention_score={config.attention_score!r} cannot be converted to Marian: MarianMTModel's attention "
            "is the paper's scaled dot product, softmax(Q K^T / sqrt(d_k)) V"
        )
    if config.layer_norm_eps != MARIAN_LAYER_NORM_EPS:
        raise ValueError(
            f"layer_norm_eps={config.layer_norm_eps} cannot be converted to Marian: "
            f"MarianMTModel's LayerNorms use eps={MARIAN_LAYER_NORM_EPS}"
        )


def marian_config(config: VanillaTransformerConfig) -> MarianConfig:
    """The `MarianConfig` of the same network (call `check_marian_compatible` first)."""
    return MarianConfig(
        vocab_size=config.vocab_size,
        decoder_vocab_size=config.vocab_size,
        d_model=config.d_model,
        encoder_layers=config.encoder_layers,
        decoder_layers=config.decoder_layers,
        encoder_attention_heads=config.encoder_attention_heads,
        decoder_attention_heads=config.decoder_attention_heads,
        encoder_ffn_dim=config.encoder_ffn_dim,
        decoder_ffn_dim=config.decoder_ffn_dim,
        activation_function=config.activation_function,
        dropout=config.dropout,
        attention_dropout=config.attention_dropout,
        activation_dropout=config.activation_dropout,
        max_position_embeddings=config.max_position_embeddings,
        scale_embedding=config.scale_embedding,
        share_encoder_decoder_embeddings=config.share_encoder_decoder_embeddings,
        tie_word_embeddings=config.tie_word_embeddings,
        pad_token_id=config.pad_token_id,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        decoder_start_token_id=config.decoder_start_token_id,
        forced_eos_token_id=None,
        use_cache=config.use_cache,
    )


def concat_order(d_model: int) -> torch.Tensor:
    """Our interleaved axis for each concat axis: `PE_concat == PE_interleaved[:, concat_order(d)]`."""
    return torch.cat([torch.arange(0, d_model, 2), torch.arange(1, d_model, 2)])


def marian_state_dict(model: VanillaTransformerForConditionalGeneration) -> dict[str, torch.Tensor]:
    """Our weights under Marian's names, with the d_model axes reordered for the concat table when
    our table is interleaved. Marian's position table and `final_logits_bias` are not included."""
    config = model.config
    order = concat_order(config.d_model) if config.sinusoidal_layout == "interleaved" else None
    state = {}
    for name, tensor in model.state_dict().items():
        kinds = [kind for kind in RESIDUAL_AXES if name.endswith(kind)]
        if len(kinds) != 1:
            raise RuntimeError(f"marian_export does not know how to convert the weight {name!r}")
        tensor = tensor.detach()
        if order is not None:
            for axis in RESIDUAL_AXES[kinds[0]]:
                tensor = tensor.index_select(axis, order.to(tensor.device))
        state[re.sub(r"\.feed_forward\.fc([12])\.", r".fc\1.", name)] = tensor
    if not config.attention_bias:  # the paper's projections have no bias; Marian's are zero
        for name in list(state):
            match = re.fullmatch(r"(.*\.(?:[qkv]|out)_proj)\.weight", name)
            if match:
                state[f"{match[1]}.bias"] = state[name].new_zeros(state[name].shape[0])
    return state


def marian_generation_config(model: VanillaTransformerForConditionalGeneration) -> GenerationConfig:
    """Our decoding settings that Marian can express: beam size, length penalty alpha (in transformers'
    form) and the special tokens; the output length is bounded by the position table."""
    ours, config = model.generation_config, model.config
    return GenerationConfig(
        num_beams=ours.num_beams,
        length_penalty=ours.length_penalty,
        max_length=config.max_position_embeddings,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        decoder_start_token_id=config.decoder_start_token_id,
    )


def to_marian(model: VanillaTransformerForConditionalGeneration) -> MarianMTModel:
    """A `MarianMTModel` computing the same logits as `model` (in eval mode, same dtype and device).

    Raises `ValueError` naming the option when the model uses one Marian cannot express (pre-LN,
    learned positions, head_dim other than d_model / heads, layer_norm_eps other than 1e-5). Warns
    when the model's generation config ranks beams with the GNMT length penalty, which Marian cannot.
    """
    # By model type, not class: a model loaded with trust_remote_code is an instance of a copy of our class.
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type != VanillaTransformerConfig.model_type or not hasattr(model, "lm_head"):
        raise TypeError(f"to_marian expects a VanillaTransformerForConditionalGeneration, got {type(model).__name__}")
    check_marian_compatible(model.config)
    form = getattr(model.generation_config, "length_penalty_form", "gnmt")
    if form == "gnmt" and (model.generation_config.num_beams or 1) > 1 and model.generation_config.length_penalty:
        warnings.warn(
            "the model's generation config ranks beams with the GNMT length penalty (length_penalty_form='gnmt'); "
            "Marian and CTranslate2 only have transformers' form score / len**alpha, so the converted model "
            "decodes like ours with length_penalty_form='hf'",
            UserWarning,
            stacklevel=2,
        )
    reference = next(model.parameters())
    marian = MarianMTModel(marian_config(model.config)).to(dtype=reference.dtype, device=reference.device).eval()
    missing, unexpected = marian.load_state_dict(marian_state_dict(model), strict=False)
    left_out = {"final_logits_bias", "model.encoder.embed_positions.weight", "model.decoder.embed_positions.weight"}
    if unexpected or set(missing) - left_out:
        raise RuntimeError(f"weights do not map onto MarianMTModel: missing {missing}, unexpected {unexpected}")
    marian.generation_config = marian_generation_config(model)
    return marian


def save_as_marian(
    model: VanillaTransformerForConditionalGeneration, tokenizer: PreTrainedTokenizerBase | None, folder: str | Path
) -> Path:
    """Write `to_marian(model)` (and `tokenizer`, unchanged) to `folder`; loadable with
    `MarianMTModel.from_pretrained(folder)` and `AutoTokenizer.from_pretrained(folder)`."""
    folder = Path(folder)
    to_marian(model).save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    return folder


__all__ = ["check_marian_compatible", "marian_config", "save_as_marian", "to_marian"]
