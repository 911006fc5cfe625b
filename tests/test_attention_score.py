"""Attention scores (§3.2.1, `config.attention_score`): the unscaled dot product and additive scores
(Bahdanau et al. 2015) against hand computations with masks, and for each option the model's promises:
cached = uncached decoding, save -> load identical logits, gradients reaching every parameter."""

import json
import logging
import math

import pytest
import torch
from transformers.masking_utils import create_bidirectional_mask, create_causal_mask

import hf_vanilla_transformer as hvt
from hf_vanilla_transformer.attention import AdditiveScore, MultiHeadAttention
from tests.helpers import random_batch, tiny_config, tiny_model
from tests.hub_helpers import result_of, run_isolated

SCORES = ("scaled_dot_product", "dot_product", "additive")
B, T, S, D, H = 2, 5, 6, 32, 4
DK = D // H


def attention_module(score: str, implementation: str, is_causal: bool) -> MultiHeadAttention:
    """One attention of the tiny model with every parameter random (standalone, outside `_init_weights`)."""
    config = tiny_config(attention_score=score, attention_bias=True)
    config._attn_implementation = implementation
    module = MultiHeadAttention(config, H, DK, is_causal=is_causal, layer_idx=0).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(0.3 * torch.randn(parameter.shape, generator=generator))
    return module


def inputs():
    """Queries (B, T, D), keys/values (B, S, D) and the keys' padding mask (B, S): row 1 has 2 padded keys."""
    generator = torch.Generator().manual_seed(1)
    queries, memory = torch.randn(B, T, D, generator=generator), torch.randn(B, S, D, generator=generator)
    memory_mask = torch.ones(B, S, dtype=torch.long)
    memory_mask[1, S - 2 :] = 0
    return queries, memory, memory_mask


def heads(module: MultiHeadAttention, x: torch.Tensor, projection: torch.nn.Linear) -> torch.Tensor:
    """x (B, L, D) -> the per-head projections (B, H, L, d_k), written out."""
    projected = x @ projection.weight.T + projection.bias
    return projected.reshape(x.shape[0], x.shape[1], H, DK).permute(0, 2, 1, 3)


def by_hand(module: MultiHeadAttention, queries, keys_values, allowed: torch.Tensor, score) -> torch.Tensor:
    """MultiHead(Q, K, V) (§3.2.2) with `score(b, h, Q_h, K_h) -> (T_q, T_k)`; `allowed` (B, T_q, T_k) is boolean."""
    q, k, v = (
        heads(module, x, p)
        for x, p in ((queries, module.q_proj), (keys_values, module.k_proj), (keys_values, module.v_proj))
    )
    out = torch.empty(B, H, queries.shape[1], DK)
    for b in range(B):
        for h in range(H):
            scores = score(b, h, q[b, h], k[b, h]).masked_fill(~allowed[b], -math.inf)
            out[b, h] = torch.softmax(scores, dim=-1) @ v[b, h]
    concat = out.permute(0, 2, 1, 3).reshape(B, queries.shape[1], D)
    return concat @ module.out_proj.weight.T + module.out_proj.bias


def masks(config, queries, memory, memory_mask, causal: bool):
    """The mask transformers builds for the model (for `config`'s kernel), and the same as a boolean (B, T_q, T_k)."""
    if causal:
        mask = create_causal_mask(config, queries, torch.ones(B, T), None, position_ids=torch.arange(T)[None])
        allowed = torch.ones(T, T, dtype=torch.bool).tril().expand(B, T, T)
    else:
        mask = create_bidirectional_mask(
            config=config, inputs_embeds=queries, attention_mask=memory_mask, encoder_hidden_states=memory
        )
        allowed = memory_mask.bool()[:, None, :].expand(B, T, S)
    return mask, allowed


@pytest.mark.parametrize("causal", [False, True], ids=["cross-attention, padded keys", "causal self-attention"])
@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
@torch.no_grad()
def test_unscaled_dot_product_is_softmax_of_q_dot_k(implementation, causal):
    module = attention_module("dot_product", implementation, is_causal=causal)
    queries, memory, memory_mask = inputs()
    keys_values = queries if causal else memory
    mask, allowed = masks(module.config, queries, memory, memory_mask, causal)
    got, _ = module(queries, key_value_states=None if causal else memory, attention_mask=mask)
    expected = by_hand(module, queries, keys_values, allowed, lambda b, h, q, k: q @ k.T)  # scaling 1
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("causal", [False, True], ids=["cross-attention, padded keys", "causal self-attention"])
@torch.no_grad()
def test_additive_scores_match_an_explicit_loop(causal):
    module = attention_module("additive", "eager", is_causal=causal)
    additive = module.additive_score
    queries, memory, memory_mask = inputs()
    keys_values = queries if causal else memory
    mask, allowed = masks(module.config, queries, memory, memory_mask, causal)
    got, weights = module(queries, key_value_states=None if causal else memory, attention_mask=mask)

    def score(b, h, q, k):  # w_v^T tanh(W_q q_i + W_k k_j), one (i, j) pair at a time
        w_q, w_k, w_v = additive.query_weight[h], additive.key_weight[h], additive.score_vector[h]
        return torch.stack(
            [
                torch.stack([w_v @ torch.tanh(w_q @ q[i] + w_k @ k[j]) for j in range(k.shape[0])])
                for i in range(q.shape[0])
            ]
        )

    torch.testing.assert_close(got, by_hand(module, queries, keys_values, allowed, score), rtol=1e-5, atol=1e-5)
    assert torch.all(weights.masked_select(~allowed[:, None]) == 0)  # masked keys get no weight


@torch.no_grad()
def test_the_papers_score_is_scaled_by_one_over_sqrt_dk():
    for score, scaling in (("scaled_dot_product", DK**-0.5), ("dot_product", 1.0)):
        module = attention_module(score, "sdpa", is_causal=False)
        assert module.scaling == scaling and module.additive_score is None  # no extra parameters or work
    assert isinstance(attention_module("additive", "eager", is_causal=False).additive_score, AdditiveScore)


def test_additive_scores_run_eager_whatever_kernel_is_requested(caplog):
    batch = random_batch()
    eager = tiny_model(attention_score="additive", attn_implementation="eager")
    with caplog.at_level(logging.WARNING):
        requested = tiny_model(attention_score="additive", attn_implementation="flex_attention")
    assert "attention_score='additive' runs with eager attention" in caplog.text and "flex_attention" in caplog.text
    for model in (requested, tiny_model(attention_score="additive"), tiny_model(attention_score="additive")):
        assert model.config._attn_implementation == "eager"
    model = tiny_model(attention_score="additive")
    model.set_attn_implementation("sdpa")  # what training in fp32 asks for
    assert model.config._attn_implementation == "eager"
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, eager(**batch).logits, rtol=0, atol=0)


def test_additive_scores_refuse_masks_built_for_another_kernel():
    module = attention_module("additive", "sdpa", is_causal=False)
    queries, memory, _ = inputs()
    with pytest.raises(RuntimeError, match="attention_score='additive' needs eager attention.*'sdpa'"):
        module(queries, key_value_states=memory)


def test_additive_parameters_are_initialised_xavier_uniform():
    model = hvt.VanillaTransformerForConditionalGeneration(tiny_config(attention_score="additive", head_dim=16))
    additive = model.model.decoder.layers[1].encoder_attn.additive_score
    for weight, bound in (
        (additive.query_weight, math.sqrt(6 / 32)),
        (additive.key_weight, math.sqrt(6 / 32)),
        (additive.score_vector, math.sqrt(6 / 17)),
    ):
        assert weight.abs().max() <= bound and weight.abs().max() > 0.9 * bound
        assert abs(weight.std().item() - bound / math.sqrt(3)) < 0.1 * bound


# ---------------------------------------------------------------- the whole model, for each score
@pytest.mark.parametrize("score", SCORES)
@torch.no_grad()
def test_cached_equals_uncached_greedy_decoding(score):
    model = tiny_model(attention_score=score)
    sources = random_batch(batch=3, src_len=6)
    sources.pop("decoder_input_ids")
    kwargs = dict(num_beams=1, max_new_tokens=10, do_sample=False)
    assert torch.equal(
        model.generate(**sources, use_cache=True, **kwargs), model.generate(**sources, use_cache=False, **kwargs)
    )


@pytest.mark.parametrize("score", SCORES)
def test_each_score_trains_and_round_trips(score, tmp_path):
    model = tiny_model(attention_score=score).train()
    batch = random_batch()
    labels = batch.pop("decoder_input_ids")
    model(**batch, labels=labels).loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters()), "unused parameters"
    model.eval().save_pretrained(tmp_path)
    loaded = hvt.VanillaTransformerForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert loaded.config.attention_score == score
    with torch.no_grad():
        assert torch.equal(loaded(**batch, labels=labels).logits, model(**batch, labels=labels).logits)


@torch.no_grad()
def test_unscaled_dot_product_eager_equals_sdpa():
    batch = random_batch()
    eager = tiny_model(attention_score="dot_product", attn_implementation="eager")
    sdpa = tiny_model(attention_score="dot_product", attn_implementation="sdpa")
    assert sdpa.config._attn_implementation == "sdpa"
    torch.testing.assert_close(sdpa(**batch).logits, eager(**batch).logits, rtol=1e-5, atol=1e-5)


REMOTE_LOAD = """
import json, sys
import torch
from transformers import AutoModelForSeq2SeqLM

batch = {key: torch.tensor(value) for key, value in json.loads(sys.argv[2]).items()}
model = AutoModelForSeq2SeqLM.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
with torch.no_grad():
    logits = model(**batch).logits
print("RESULT " + json.dumps({
    "module": type(model).__module__,
    "score": model.config.attention_score,
    "kernel": model.config._attn_implementation,
    "logits": logits.tolist(),
}))
"""


def test_additive_model_loads_as_remote_code_without_the_package(tmp_path):
    model = tiny_model(attention_score="additive")
    model.save_pretrained(tmp_path / "model")
    batch = random_batch()
    remote = result_of(
        run_isolated(
            REMOTE_LOAD,
            tmp_path / "fresh",
            str(tmp_path / "model"),
            json.dumps({k: v.tolist() for k, v in batch.items()}),
        )
    )
    assert remote["module"].startswith("transformers_modules.")
    assert (remote["score"], remote["kernel"]) == ("additive", "eager")
    with torch.no_grad():
        torch.testing.assert_close(torch.tensor(remote["logits"]), model(**batch).logits, rtol=1e-6, atol=1e-6)
