"""The whole stack against transformers' MarianMTModel with the same weights.

Marian is the same architecture up to options: post-LN, sqrt(d_model) embedding scale, shared and
tied embeddings, sinusoidal positions in the concatenated layout, biased attention projections. With
those options set, and ReLU, both models must give the same logits, and the same beam search output
under transformers' length penalty.
"""

import re

import pytest
import torch
from transformers import MarianConfig, MarianMTModel

import hf_vanilla_transformer as hvt
from tests.helpers import TINY_SIZES, random_batch

SIZES = {**TINY_SIZES, "vocab_size": 60}


def marian_and_ours(implementation: str = "eager"):
    torch.manual_seed(0)
    marian = MarianMTModel(
        MarianConfig(
            **SIZES,
            activation_function="relu",
            scale_embedding=True,
            dropout=0.0,
            attention_dropout=0.0,
            activation_dropout=0.0,
            pad_token_id=0,
            eos_token_id=2,
            forced_eos_token_id=None,
            bos_token_id=1,
            decoder_start_token_id=1,
            share_encoder_decoder_embeddings=True,
            attn_implementation=implementation,
        )
    ).eval()
    ours = hvt.VanillaTransformerForConditionalGeneration(
        hvt.VanillaTransformerConfig(
            **SIZES,
            attention_bias=True,
            sinusoidal_layout="concat",
            dropout=0.0,
            attn_implementation=implementation,
        )
    ).eval()
    ours.generation_config.length_penalty_form = "hf"  # Marian ranks beams with transformers' penalty
    state = {
        re.sub(r"\.fc([12])\.", r".feed_forward.fc\1.", k): v
        for k, v in marian.state_dict().items()
        if "embed_positions" not in k and k != "final_logits_bias"
    }
    missing, unexpected = ours.load_state_dict(state, strict=False)
    assert not unexpected, unexpected
    assert not [k for k in missing if "embed_tokens" not in k and k != "lm_head.weight"], missing  # tied copies
    assert torch.count_nonzero(marian.final_logits_bias) == 0
    assert torch.equal(marian.model.encoder.embed_positions.weight, ours.model.encoder.embed_positions.table)
    return marian, ours


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
@torch.no_grad()
def test_logits_equal_marian(implementation):
    marian, ours = marian_and_ours(implementation)
    batch = random_batch(vocab_size=60, batch=3, src_len=9, tgt_len=6)
    expected = marian(**batch).logits
    got = ours(**batch).logits
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_encoder_states_and_loss_equal_marian():
    marian, ours = marian_and_ours()
    batch = random_batch(vocab_size=60)
    labels = batch.pop("decoder_input_ids")[:, 1:].contiguous()
    labels[1, -1] = -100
    m, o = marian(**batch, labels=labels), ours(**batch, labels=labels)
    # Ours computes nothing at source padding (config.skip_padding): zeros there, which nothing reads.
    tokens = batch["attention_mask"].bool()
    encoded = o.encoder_last_hidden_state
    torch.testing.assert_close(encoded[tokens], m.encoder_last_hidden_state[tokens], rtol=1e-5, atol=1e-5)
    assert torch.count_nonzero(encoded[~tokens]) == 0
    torch.testing.assert_close(o.loss, m.loss, rtol=1e-5, atol=1e-5)
    ours.config.skip_padding = False  # every position computed, as Marian does
    o = ours(**batch, labels=labels)
    torch.testing.assert_close(o.encoder_last_hidden_state, m.encoder_last_hidden_state, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(o.loss, m.loss, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_beam_search_equals_marian_under_hf_length_penalty():
    marian, ours = marian_and_ours()
    batch = random_batch(vocab_size=60)
    batch.pop("decoder_input_ids")
    kwargs = dict(num_beams=4, length_penalty=0.6, max_new_tokens=12, do_sample=False)
    expected = marian.generate(**batch, **kwargs)
    got = ours.generate(**batch, **kwargs)
    assert torch.equal(got, expected)
