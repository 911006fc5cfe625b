"""VanillaTransformerConfig: presets (paper Table 3), validation with clear ValueErrors, round trip."""

import pytest

import hf_vanilla_transformer as hvt
from hf_vanilla_transformer import VanillaTransformerConfig


def test_defaults_are_the_papers_choices():
    c = VanillaTransformerConfig()
    assert (c.layer_norm_position, c.position_embedding_type, c.sinusoidal_layout) == (
        "post",
        "sinusoidal",
        "interleaved",
    )
    assert c.scale_embedding and c.share_encoder_decoder_embeddings and c.tie_word_embeddings
    assert c.activation_function == "relu" and not c.attention_bias
    assert c.attention_score == "scaled_dot_product"  # softmax(Q K^T / sqrt(d_k)) V, §3.2.1


@pytest.mark.parametrize(
    "preset, expected",
    [
        (
            "base",
            dict(
                d_model=512,
                encoder_layers=6,
                decoder_layers=6,
                encoder_attention_heads=8,
                encoder_ffn_dim=2048,
                dropout=0.1,
            ),
        ),
        (
            "big",
            dict(
                d_model=1024,
                encoder_layers=6,
                decoder_layers=6,
                encoder_attention_heads=16,
                encoder_ffn_dim=4096,
                dropout=0.3,
            ),
        ),
        (
            "small",
            dict(
                d_model=256,
                encoder_layers=3,
                decoder_layers=3,
                encoder_attention_heads=4,
                encoder_ffn_dim=1024,
                dropout=0.1,
            ),
        ),
    ],
)
def test_presets(preset, expected):
    config = getattr(VanillaTransformerConfig, preset)(vocab_size=1000)
    assert {k: getattr(config, k) for k in expected} == expected
    assert config.vocab_size == 1000


def test_base_preset_parameter_count_matches_table3():
    # Table 3 lists 65M parameters for the base model with a 37k shared vocabulary (biases in attention
    # are not in the paper; the count here is without them).
    model = hvt.VanillaTransformerForConditionalGeneration(VanillaTransformerConfig.base(vocab_size=37000))
    n = sum(p.numel() for p in model.parameters())  # tied weights counted once
    assert 60e6 < n < 66e6, n


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(d_model=100, encoder_attention_heads=8),
            "d_model (100) must be divisible by encoder_attention_heads (8)",
        ),
        (dict(decoder_attention_heads=3), "divisible by decoder_attention_heads (3)"),
        (dict(dropout=-0.1), "dropout must be in [0, 1), got -0.1"),
        (dict(attention_dropout=1.0), "attention_dropout must be in [0, 1), got 1.0"),
        (dict(vocab_size=0), "vocab_size must be a positive integer, got 0"),
        (
            dict(sinusoidal_layout="stacked"),
            "sinusoidal_layout must be one of ('interleaved', 'concat'), got 'stacked'",
        ),
        (dict(layer_norm_position="middle"), "layer_norm_position must be one of"),
        (dict(position_embedding_type="rotary"), "position_embedding_type must be one of"),
        (dict(activation_function="tanh"), "activation_function must be one of"),
        (
            dict(attention_score="cosine"),
            "attention_score must be one of ('scaled_dot_product', 'dot_product', 'additive'), got 'cosine'",
        ),
    ],
)
def test_invalid_values_raise_value_error_naming_them(kwargs, message):
    with pytest.raises(ValueError) as error:
        VanillaTransformerConfig(**kwargs)
    assert message in str(error.value)


def test_odd_d_model_rejected_for_sinusoids():
    with pytest.raises(ValueError, match="even d_model, got 15"):
        VanillaTransformerConfig(d_model=15, encoder_attention_heads=3, decoder_attention_heads=3)
    VanillaTransformerConfig(
        d_model=15, encoder_attention_heads=3, decoder_attention_heads=3, position_embedding_type="learned"
    )


def test_explicit_head_dim_allows_any_split():
    config = VanillaTransformerConfig(d_model=64, encoder_attention_heads=3, decoder_attention_heads=3, head_dim=16)
    assert config.encoder_head_dim == 16


def test_generation_settings_are_not_config_fields():
    # transformers v5 keeps them in generation_config.json; the model sets the paper's there.
    model = hvt.VanillaTransformerForConditionalGeneration(VanillaTransformerConfig.small(vocab_size=100))
    assert model.generation_config.num_beams == 4
    assert model.generation_config.length_penalty == 0.6
    assert model.generation_config.max_new_tokens_over_input == 50


def test_round_trip(tmp_path):
    config = VanillaTransformerConfig.small(vocab_size=123, sinusoidal_layout="concat", layer_norm_position="pre")
    config.save_pretrained(tmp_path)
    loaded = VanillaTransformerConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == config.to_dict()


def test_head_dim_is_resolved_to_an_int_as_transformers_generic_code_expects():
    assert VanillaTransformerConfig().head_dim == 64  # 512 / 8 (§3.2.2)
    assert VanillaTransformerConfig.small().head_dim == 64  # 256 / 4
    assert VanillaTransformerConfig(head_dim=16).head_dim == 16  # Table 3 rows A/B
    # Stacks with different numbers of heads keep d_model / h each.
    mixed = VanillaTransformerConfig(encoder_attention_heads=8, decoder_attention_heads=4)
    assert (mixed.encoder_head_dim, mixed.decoder_head_dim) == (64, 128)


def test_configs_saved_with_decoding_and_training_fields_still_load(tmp_path):
    """Earlier versions kept `length_penalty_form` and `label_smoothing` in config.json."""
    import json

    VanillaTransformerConfig.tiny().save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**saved, "length_penalty_form": "hf", "label_smoothing": 0.1}))
    loaded = VanillaTransformerConfig.from_pretrained(tmp_path)
    assert loaded.length_penalty_form == "hf" and loaded.label_smoothing == 0.1
    assert "length_penalty_form" not in VanillaTransformerConfig.tiny().to_dict()
    assert "label_smoothing" not in VanillaTransformerConfig.tiny().to_dict()


@pytest.mark.parametrize("name", ["tiny", "small", "base", "big"])
def test_presets_by_name(name):
    from hf_vanilla_transformer.configuration_vanilla_transformer import PRESETS

    config = VanillaTransformerConfig.from_preset(name, vocab_size=100)
    assert config.vocab_size == 100
    assert all(getattr(config, key) == value for key, value in PRESETS[name].items() if key != "vocab_size")
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        VanillaTransformerConfig.from_preset("huge")


def test_attention_score_round_trips_and_old_configs_load_the_papers(tmp_path):
    import json

    VanillaTransformerConfig.tiny(attention_score="additive").save_pretrained(tmp_path)
    assert VanillaTransformerConfig.from_pretrained(tmp_path).attention_score == "additive"
    saved = json.loads((tmp_path / "config.json").read_text())
    del saved["attention_score"]  # a config.json written before the option existed
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert VanillaTransformerConfig.from_pretrained(tmp_path).attention_score == "scaled_dot_product"
