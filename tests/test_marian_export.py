"""`to_marian`: a trained model becomes a transformers `MarianMTModel` computing the same function.

The reference is transformers' own MarianMTModel code (positions, attention, layers), run on the
converted weights and compared with our model: logits to float rounding, encoder states as our
states with their axes reordered (the re-parametrisation the interleaved table needs), and beam
search output under transformers' length penalty. Every parameter is randomised first, so that a
LayerNorm gain or bias mapped to the wrong axis cannot hide behind the default 1s and 0s.
"""

import copy
import re
import warnings

import pytest
import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, MarianConfig, MarianMTModel

from hf_vanilla_transformer.marian_export import concat_order, save_as_marian, to_marian
from tests._tiny_tokenizer import tiny_tokenizer
from tests.helpers import random_batch, tiny_model

OPTIONS = {
    "paper defaults (interleaved, no attention bias)": {},
    "Marian-like (concat, attention bias)": dict(sinusoidal_layout="concat", attention_bias=True),
    "gelu": dict(activation_function="gelu"),
    "unshared embeddings": dict(share_encoder_decoder_embeddings=False),
    "untied output layer": dict(tie_word_embeddings=False),
    "unshared and untied": dict(share_encoder_decoder_embeddings=False, tie_word_embeddings=False),
    "unscaled embeddings": dict(scale_embedding=False),
    "encoder and decoder sizes differ": dict(
        encoder_attention_heads=2, decoder_attention_heads=8, encoder_ffn_dim=48, decoder_ffn_dim=80, decoder_layers=3
    ),
}


def trained_like(seed: int = 0, **overrides):
    """A tiny model with every parameter random (LayerNorm gains and all biases too), decoding with
    transformers' length penalty as Marian does."""
    model = tiny_model(seed=seed, **overrides)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "layer_norm" in name or name.endswith("bias"):
                parameter.add_(0.2 * torch.randn(parameter.shape, generator=generator))
    model.generation_config.length_penalty_form = "hf"
    return model


@pytest.mark.parametrize("overrides", OPTIONS.values(), ids=OPTIONS.keys())
@torch.no_grad()
def test_marian_computes_our_logits(overrides):
    ours = trained_like(**overrides)
    marian = to_marian(ours)
    assert isinstance(marian, MarianMTModel) and not marian.training
    batch = random_batch(batch=3, src_len=9, tgt_len=6)
    expected, got = ours(**batch), marian(**batch)
    torch.testing.assert_close(got.logits, expected.logits, rtol=1e-5, atol=1e-5)
    # Marian's hidden states are ours with the d_model axes in the concat order, at the source tokens (ours
    # computes nothing at padding: config.skip_padding).
    order = concat_order(32) if ours.config.sinusoidal_layout == "interleaved" else torch.arange(32)
    tokens = batch["attention_mask"].bool()
    torch.testing.assert_close(
        got.encoder_last_hidden_state[tokens],
        expected.encoder_last_hidden_state[..., order][tokens],
        rtol=1e-5,
        atol=1e-5,
    )


@pytest.mark.parametrize(
    "overrides", [{}, dict(sinusoidal_layout="concat", attention_bias=True)], ids=["paper", "marian"]
)
@torch.no_grad()
def test_marian_beam_search_equals_ours_under_hf_length_penalty(overrides):
    ours = trained_like(seed=1, **overrides)
    marian = to_marian(ours)
    batch = random_batch(batch=4, src_len=8, seed=3)
    batch.pop("decoder_input_ids")
    for num_beams in (1, 4):
        kwargs = dict(num_beams=num_beams, length_penalty=0.6, max_new_tokens=15)
        expected = ours.generate(**batch, **kwargs, length_penalty_form="hf")
        assert torch.equal(marian.generate(**batch, **kwargs), expected)


def test_interleaved_table_reordered_is_marians_table():
    """`concat_order` checked against Marian's own table (computed by transformers, in numpy)."""
    ours = tiny_model()
    marian = MarianMTModel(
        MarianConfig(
            d_model=32, max_position_embeddings=64, encoder_layers=0, decoder_layers=0, vocab_size=10, pad_token_id=0
        )
    )
    table = ours.model.encoder.embed_positions.table
    assert not torch.equal(table, marian.model.encoder.embed_positions.weight)
    assert torch.equal(table[:, concat_order(32)], marian.model.encoder.embed_positions.weight)


@torch.no_grad()
def test_without_the_reordering_the_interleaved_model_differs():
    """The reordering is what makes the default layout exact: copying the weights as they are, as if
    our table were concat, gives other logits."""
    ours = trained_like()
    pretend = copy.deepcopy(ours)
    pretend.config.sinusoidal_layout = "concat"  # the table stays interleaved; only the conversion is fooled
    batch = random_batch()
    difference = (to_marian(pretend)(**batch).logits - ours(**batch).logits).abs().max()
    assert difference > 1e-2


@torch.no_grad()
def test_save_as_marian_loads_without_our_code(tmp_path):
    ours = trained_like(vocab_size=300)
    tokenizer = tiny_tokenizer(vocab_size=300)
    assert len(tokenizer) == 300
    save_as_marian(ours, tokenizer, tmp_path)
    marian = AutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    loaded_tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    assert type(marian) is MarianMTModel
    assert "auto_map" not in marian.config.to_dict()  # no remote code involved
    text = "Zwei Hunde spielen im Schnee."
    assert loaded_tokenizer(text).input_ids == tokenizer(text).input_ids
    batch = random_batch(vocab_size=300)
    torch.testing.assert_close(marian(**batch).logits, ours(**batch).logits, rtol=1e-5, atol=1e-5)
    config, generation = marian.config, marian.generation_config
    assert (config.pad_token_id, config.bos_token_id, config.eos_token_id) == (0, 1, 2)
    assert config.decoder_start_token_id == generation.decoder_start_token_id == 1  # our <s>, not Marian's <pad>
    assert config.forced_eos_token_id is None
    assert torch.count_nonzero(marian.final_logits_bias) == 0
    assert (generation.num_beams, generation.length_penalty, generation.max_length) == (4, 0.6, 64)


REFUSED = {
    "pre-LN": (dict(layer_norm_position="pre"), "layer_norm_position='pre'"),
    "learned positions": (dict(position_embedding_type="learned"), "position_embedding_type='learned'"),
    "head_dim": (dict(head_dim=16), "head_dim=16 with encoder_attention_heads=4"),
    "layer_norm_eps": (dict(layer_norm_eps=1e-6), "layer_norm_eps=1e-06"),
    "unscaled dot product": (dict(attention_score="dot_product"), "attention_score='dot_product'"),
    "additive scores": (dict(attention_score="additive"), "attention_score='additive'"),
}


@pytest.mark.parametrize(("overrides", "message"), REFUSED.values(), ids=REFUSED.keys())
def test_refuses_what_marian_cannot_express(overrides, message):
    with pytest.raises(ValueError, match=re.escape(message) + ".*cannot be converted to Marian"):
        to_marian(tiny_model(**overrides))


def test_refuses_other_models():
    marian = MarianMTModel(MarianConfig(d_model=32, encoder_layers=0, decoder_layers=0, vocab_size=10, pad_token_id=0))
    with pytest.raises(TypeError, match="VanillaTransformerForConditionalGeneration, got MarianMTModel"):
        to_marian(marian)


def test_warns_that_the_gnmt_length_penalty_is_not_kept():
    model = tiny_model()
    assert model.generation_config.length_penalty_form == "gnmt"  # the paper's default
    with pytest.warns(UserWarning, match="GNMT length penalty"):
        to_marian(model)
    model.generation_config.length_penalty_form = "hf"
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        to_marian(model)


def test_the_translation_benchmark_decodes_alike_with_ours_and_its_marian_copy(tmp_path):
    """`benchmarks/bench_translation.py` times ours against its own Marian copy through `translate()`: both
    must write the same translations, greedy and beam, or the times compare different work. (An untrained
    model's translations run to the length limit, which both then share.)"""
    from benchmarks.bench_translation import bench_translation

    tokenizer = tiny_tokenizer(vocab_size=300)
    trained_like(vocab_size=300).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    sources = ["Zwei Hunde spielen im Schnee.", "Ein Mann", "Eine Frau liest ein Buch im Park.", "Ja"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Marian has no GNMT penalty: the benchmark uses hf's
        rows = bench_translation(tmp_path, sources, beams=(1, 3), max_new_tokens=12, rounds=1)
    assert [(row["measurement"], row["variant"]) for row in rows] == [
        ("greedy translation, 4 sentences", "marian"),
        ("greedy translation, 4 sentences", "ours"),
        ("greedy translation, 4 sentences", "ours, transformers' loop"),
        ("beam-3 translation, 4 sentences", "marian"),
        ("beam-3 translation, 4 sentences", "ours"),
        ("beam-3 translation, 4 sentences", "ours, transformers' loop"),
    ]
    assert all(row["identical_to_marian"] == 1.0 for row in rows)
    assert rows[0]["ratio_vs_marian"] == 1.0 and rows[1]["seconds"] > 0
