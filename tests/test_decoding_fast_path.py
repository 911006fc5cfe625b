"""The decoding fast paths give the outputs of the plain computation (`benchmarks/README.md` says what each buys).

- Beam search keeps one cross-attention K/V per sentence and folds the beams' queries into query
  positions (`beam_cache.BeamSearchCache`, `fold_beams`).
- A one-token decoding step builds no causal mask (`VanillaTransformerDecoder.forward`).
- Inside `generate()` (without autograd) linear layers run through oneDNN with a weight packed once per call
  (`onednn.py`): every layer, the pre-softmax layer only, or none, as measured to pay on the CPU; elsewhere they are
  the plain layers. These tests take the route for every layer on every CPU (`prefer_onednn(True)`), and check which
  layers each CPU routes by default.
- A cached step of an SDPA model over many sentences computes attention for its few queries with plain matrix
  products (`attention.decode_step_attention`) instead of torch's fused kernel. These tests take the products
  from one sentence up (`DECODE_STEP_MIN_ROWS = 1`), and check the rule.

The reference is decoding without a KV cache (`use_cache=False`: the whole prefix again at every step,
masks built by transformers) with oneDNN switched off, on batches with source padding. No timings here.
"""

from __future__ import annotations

import contextlib
import warnings

import pytest
import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

from hf_vanilla_transformer import attention as attention_module
from hf_vanilla_transformer import beam_cache as beam_cache_module
from hf_vanilla_transformer import onednn
from hf_vanilla_transformer.attention import decode_step_attention
from hf_vanilla_transformer.beam_cache import (
    BeamSearchCache,
    ReorderOnUpdateLayer,
    beam_self_attention_cache,
    fold_beams,
    unfold_beam_weights,
)
from hf_vanilla_transformer.compat import CACHE_NAME
from hf_vanilla_transformer.onednn import onednn_linear, packed_weights, prefer_onednn
from tests.helpers import random_batch, tiny_model


@pytest.fixture(autouse=True)
def onednn_route_on_every_cpu():
    """The oneDNN route is checked wherever torch has oneDNN, whether or not this CPU takes it by default."""
    with prefer_onednn(True):
        yield


@pytest.fixture(autouse=True)
def decode_step_products_for_every_batch(monkeypatch):
    """The products of `decode_step_attention` are checked on the tests' small batches, where by default torch's
    SDPA kernel runs (`attention.DECODE_STEP_MIN_ROWS`)."""
    monkeypatch.setattr(attention_module, "DECODE_STEP_MIN_ROWS", 1)


def _padded_sources(batch: int = 4) -> dict:
    sources = random_batch(batch=batch, src_len=7, seed=3)  # rows 1.. end in padding
    sources.pop("decoder_input_ids")
    return sources


@contextlib.contextmanager
def plain_kernels():
    """oneDNN off (F.linear everywhere), without torch's note about TF32 on Intel GPUs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with torch.backends.mkldnn.flags(enabled=False):
            yield


def _generate(model, sources, **kwargs):
    return model.generate(
        **sources, max_new_tokens=9, do_sample=False, return_dict_in_generate=True, output_scores=True, **kwargs
    )


# ---------------------------------------------------------------- end to end: tokens and scores
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("form", ["gnmt", "hf"])
@torch.no_grad()
def test_beam_search_fast_path_equals_uncached_decoding(attention, form):
    model = tiny_model(attn_implementation=attention)
    sources = _padded_sources()
    fast = _generate(model, sources, num_beams=4, length_penalty_form=form)
    assert isinstance(getattr(fast, CACHE_NAME), BeamSearchCache)
    assert getattr(fast, CACHE_NAME).beams_per_source == 4
    with plain_kernels():
        plain = _generate(model, sources, num_beams=4, length_penalty_form=form, use_cache=False)
    assert torch.equal(fast.sequences, plain.sequences)
    torch.testing.assert_close(fast.sequences_scores, plain.sequences_scores, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_beam_search_with_reorder_on_update_equals_transformers_own_self_attention_cache():
    """The default beam cache's self-attention layers gather the surviving beams during the next update
    (`ReorderOnUpdateLayer`); tokens, scores and the returned cache are those of transformers' `DynamicLayer`."""
    model = tiny_model()
    sources = _padded_sources()
    config = model.config.get_text_config(decoder=True)
    fast = _generate(model, sources, num_beams=3)
    cache = getattr(fast, CACHE_NAME)
    assert all(type(layer) is ReorderOnUpdateLayer for layer in cache.self_attention_cache.layers)
    given = BeamSearchCache(DynamicCache(config=config), DynamicCache(config=config), beams_per_source=3)
    plain = _generate(model, sources, num_beams=3, **{CACHE_NAME: given})
    assert all(type(layer) is DynamicLayer for layer in given.self_attention_cache.layers)
    assert torch.equal(fast.sequences, plain.sequences)
    assert torch.equal(fast.sequences_scores, plain.sequences_scores)
    for ours, theirs in zip(cache.self_attention_cache.layers, given.self_attention_cache.layers, strict=True):
        assert torch.equal(ours.keys, theirs.keys) and torch.equal(ours.values, theirs.values)


def test_reorder_on_update_layer_holds_what_dynamic_layer_holds():
    """Any sequence of updates and reorderings (two in a row compose), read after each step."""
    generator = torch.Generator().manual_seed(0)
    ours, theirs = ReorderOnUpdateLayer(), DynamicLayer()
    steps = ["update", "reorder", "update", "reorder", "reorder", "update", "reorder", "read", "update", "update"]
    for step in steps:
        if step == "update":
            key, value = torch.randn(6, 2, 1, 4, generator=generator), torch.randn(6, 2, 1, 4, generator=generator)
            got, expected = ours.update(key, value), theirs.update(key, value)
            assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))
        elif step == "reorder":
            beam_idx = torch.randint(0, 6, (6,), generator=generator)
            ours.reorder_cache(beam_idx)
            theirs.reorder_cache(beam_idx)
            beam_idx.fill_(0)  # the caller's tensor may change afterwards: the layer kept its own copy
        assert ours.get_seq_length() == theirs.get_seq_length()
        if step == "read":
            assert torch.equal(ours.keys, theirs.keys) and torch.equal(ours.values, theirs.values)
    assert torch.equal(ours.keys, theirs.keys) and torch.equal(ours.values, theirs.values)
    ours.reorder_cache(torch.tensor([5, 4, 3, 2, 1, 0]))
    ours.batch_select_indices(torch.tensor([0, 2]))  # transformers' own methods read the reordered keys
    theirs.reorder_cache(torch.tensor([5, 4, 3, 2, 1, 0]))
    theirs.batch_select_indices(torch.tensor([0, 2]))
    assert torch.equal(ours.keys, theirs.keys) and torch.equal(ours.values, theirs.values)


def test_beam_self_attention_cache_warns_and_keeps_transformers_cache_if_built_otherwise(monkeypatch, caplog):
    """A transformers release that builds `DynamicCache(config=...)` differently gets its own cache, and a warning."""

    class OtherLayer(DynamicLayer):
        pass

    class OtherCache(DynamicCache):
        def __init__(self, config=None):
            super().__init__(config=config)
            self.layers = [OtherLayer() for _ in self.layers]

    config = tiny_model().config.get_text_config(decoder=True)
    assert all(type(layer) is ReorderOnUpdateLayer for layer in beam_self_attention_cache(config).layers)
    monkeypatch.setattr(beam_cache_module, "DynamicCache", OtherCache)
    monkeypatch.setattr(beam_cache_module, "_warned", {})
    with caplog.at_level("WARNING", logger="hf_vanilla_transformer.beam_cache"):
        cache = beam_self_attention_cache(config)
    assert all(type(layer) is OtherLayer for layer in cache.layers)
    assert "did not build a list of DynamicLayer (got ['OtherLayer'])" in caplog.text


@pytest.mark.parametrize("score", ["dot_product", "additive"])
@torch.no_grad()
def test_beam_search_fast_path_with_other_attention_scores(score):
    """The folded beams are plain query positions, so every score function (§3.2.1) sees the same pairs."""
    model = tiny_model(attention_score=score)
    sources = _padded_sources()
    fast = _generate(model, sources, num_beams=4)
    assert getattr(fast, CACHE_NAME).beams_per_source == 4
    with plain_kernels():
        plain = _generate(model, sources, num_beams=4, use_cache=False)
    assert torch.equal(fast.sequences, plain.sequences)
    torch.testing.assert_close(fast.sequences_scores, plain.sequences_scores, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@torch.no_grad()
def test_greedy_fast_path_equals_uncached_decoding(attention):
    model = tiny_model(attn_implementation=attention)
    sources = _padded_sources()
    fast = _generate(model, sources, num_beams=1)
    with plain_kernels():
        plain = _generate(model, sources, num_beams=1, use_cache=False)
    assert torch.equal(fast.sequences, plain.sequences)
    for step_fast, step_plain in zip(fast.scores, plain.scores, strict=True):
        torch.testing.assert_close(step_fast, step_plain, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_one_cross_attention_copy_per_sentence_gives_the_per_beam_attention_weights():
    """Folded beams (one K/V per sentence) against one K/V per beam row: same tokens, scores and
    cross-attention weights, returned per beam row as (batch * beams, heads, 1, source length)."""
    model = tiny_model(attn_implementation="eager")
    sources = _padded_sources(batch=3)
    kwargs = dict(num_beams=4, output_attentions=True)
    folded = _generate(model, sources, **kwargs)
    per_row_cache = BeamSearchCache(DynamicCache(), DynamicCache(), beams_per_source=1)
    per_row = _generate(model, sources, **kwargs, **{CACHE_NAME: per_row_cache})
    cross = getattr(folded, CACHE_NAME).cross_attention_cache.layers[0].keys
    assert cross.shape[0] == 3  # sentences, not 3 * 4 beam rows
    assert per_row_cache.cross_attention_cache.layers[0].keys.shape[0] == 12
    assert torch.equal(folded.sequences, per_row.sequences)
    torch.testing.assert_close(folded.sequences_scores, per_row.sequences_scores)
    for step_folded, step_rows in zip(folded.cross_attentions, per_row.cross_attentions, strict=True):
        for layer_folded, layer_rows in zip(step_folded, step_rows, strict=True):
            assert layer_folded.shape == (12, model.config.decoder_attention_heads, 1, sources["input_ids"].shape[1])
            torch.testing.assert_close(layer_folded, layer_rows)


def test_fold_beams_layout():
    """Query row b * k + j, position t becomes query position j * T + t of sentence b; weights go back."""
    sentences, beams, heads, length, head_dim, source_len = 2, 3, 4, 2, 5, 6
    query = torch.randn(sentences * beams, heads, length, head_dim)
    mask = torch.randn(sentences * beams, 1, 1, source_len).repeat_interleave(beams, dim=0)[::beams]
    folded, folded_mask = fold_beams(query, mask, beams)
    assert folded.shape == (sentences, heads, beams * length, head_dim)
    for b in range(sentences):
        for j in range(beams):
            for t in range(length):
                assert torch.equal(folded[b, :, j * length + t], query[b * beams + j, :, t])
    assert torch.equal(folded_mask, mask[::beams])
    weights = torch.randn(sentences, heads, beams * length, source_len)
    rows = unfold_beam_weights(weights, beams)
    assert rows.shape == (sentences * beams, heads, length, source_len)
    assert torch.equal(rows[1 * beams + 2, :, 1], weights[1, :, 2 * length + 1])


def test_per_source_refuses_rows_that_are_not_copies_of_one_sentence():
    cache = BeamSearchCache(DynamicCache(), DynamicCache(), beams_per_source=2)
    sentence = torch.randn(2, 5, 8).repeat_interleave(2, dim=0)
    assert torch.equal(cache.per_source(sentence), sentence[::2])
    with pytest.raises(RuntimeError, match="not 2 consecutive copies"):
        cache.per_source(torch.randn(4, 5, 8))
    with pytest.raises(RuntimeError, match="not 2 consecutive copies"):
        cache.per_source(torch.randn(3, 5, 8))
    with pytest.raises(ValueError, match="beams_per_source must be a positive integer, got 0"):
        BeamSearchCache(DynamicCache(), DynamicCache(), beams_per_source=0)


# ---------------------------------------------------------------- the one-token step without a causal mask
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@torch.no_grad()
def test_one_token_steps_equal_the_masked_full_pass(attention):
    model = tiny_model(attn_implementation=attention)
    batch = random_batch(seed=4)
    full = model(**batch, use_cache=False).logits  # (B, T, V) with transformers' causal and padding masks
    encoder = model.get_encoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    cache, steps = None, []
    for t in range(batch["decoder_input_ids"].shape[1]):
        out = model(
            encoder_outputs=encoder,
            attention_mask=batch["attention_mask"],
            decoder_input_ids=batch["decoder_input_ids"][:, t : t + 1],
            cache=cache,
            use_cache=True,
        )
        cache = getattr(out, CACHE_NAME)
        steps.append(out.logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- oneDNN with packed weights
def test_onednn_linear_equals_the_linear_layer_and_follows_weight_updates():
    torch.manual_seed(0)
    layer = torch.nn.Linear(32, 100)
    x = torch.randn(5, 1, 32)
    with torch.no_grad(), packed_weights():
        torch.testing.assert_close(onednn_linear(layer, x), torch.nn.functional.linear(x, layer.weight, layer.bias))
        assert layer in onednn._PACKED.get()  # the packed route was taken
        layer.weight.mul_(-2.0)  # an in-place update inside the block bumps the version: packed again
        torch.testing.assert_close(onednn_linear(layer, x), torch.nn.functional.linear(x, layer.weight, layer.bias))
        layer.weight = torch.nn.Parameter(torch.randn(100, 32))  # a new tensor
        torch.testing.assert_close(onednn_linear(layer, x), torch.nn.functional.linear(x, layer.weight, layer.bias))
    assert onednn._PACKED.get() is None  # the packed copies end with the block


@pytest.mark.parametrize(
    "vendor, flags, expected",
    [
        ("AuthenticAMD", {"avx2", "avx512f", "avx512_bf16"}, "all"),
        ("AuthenticAMD", {"avx2"}, "pre-softmax"),
        ("GenuineIntel", {"avx2", "avx512f", "amx_bf16"}, "none"),
        ("", set(), "none"),
    ],
)
def test_by_default_the_route_covers_the_layers_where_it_pays(monkeypatch, vendor, flags, expected):
    """Measured in the model (onednn.py): every layer faster on AMD EPYC CPUs with AVX-512; on one with AVX2 only,
    the pre-softmax layer alone; none on an Intel Xeon, nor where the CPU is unknown. A caller's choice wins."""
    monkeypatch.setattr(onednn, "_vendor", {"vendor": vendor})
    monkeypatch.setattr(onednn, "_flags", {"flags": frozenset(flags)})
    assert onednn.route() == expected
    x = torch.randn(3, 16)
    for chosen in (None, *onednn.ROUTES):
        layer, head = torch.nn.Linear(16, 40), torch.nn.Linear(16, 40)
        with torch.no_grad(), prefer_onednn(chosen), packed_weights():
            torch.testing.assert_close(onednn_linear(layer, x), layer(x))
            torch.testing.assert_close(onednn_linear(head, x, pre_softmax=True), head(x))
            packed = set(onednn._PACKED.get())
        covered = chosen or expected
        assert packed == {"none": set(), "pre-softmax": {head}, "all": {layer, head}}[covered]


def test_prefer_onednn_names_the_routes():
    with prefer_onednn(True):
        assert onednn._PREFERRED.get() == "all"
    with prefer_onednn(False):
        assert onednn._PREFERRED.get() == "none"
    with pytest.raises(ValueError, match=r"one of \('none', 'pre-softmax', 'all'\)"), prefer_onednn("lm_head"):
        pass


def test_the_pre_softmax_route_packs_the_models_pre_softmax_layer_only():
    model, sources = tiny_model(), _padded_sources()
    with torch.no_grad(), prefer_onednn("pre-softmax"), packed_weights():
        reference = model(**sources, decoder_input_ids=sources["input_ids"][:, :3]).logits
        assert set(onednn._PACKED.get()) == {model.lm_head}
    with torch.no_grad(), plain_kernels():
        plain = model(**sources, decoder_input_ids=sources["input_ids"][:, :3]).logits
    torch.testing.assert_close(reference, plain, rtol=1e-5, atol=1e-5)


def test_a_packed_weights_block_inside_another_reuses_its_packed_weights():
    """`translate()` holds one block around its batches, and each `generate()` call opens one inside it:
    the inner block packs nothing again, and the copies live until the outer block ends."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 40)
    x = torch.randn(3, 16)
    with torch.no_grad(), packed_weights():
        outer = onednn._PACKED.get()
        with packed_weights():
            assert onednn._PACKED.get() is outer
            onednn_linear(layer, x)
        assert layer in outer  # packed inside the inner block, kept by the outer one
        with packed_weights():
            assert onednn._PACKED.get() is outer and layer in outer
    assert onednn._PACKED.get() is None


def test_onednn_linear_outside_packed_weights_is_the_plain_layer():
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 40)
    x = torch.randn(3, 16)
    with torch.no_grad():
        assert torch.equal(onednn_linear(layer, x), layer(x))


def test_a_fused_optimizer_step_between_generate_calls_is_seen():
    """torch's fused AdamW (transformers' default optimizer) updates weights in place without bumping their
    version counter: a packed weight kept from one `generate()` to the next would then be stale (it was: the
    recipe's validation BLEU stalled while its loss fell). Decoding and forwards after a step must be those of
    the updated weights."""
    model = tiny_model()
    sources = random_batch(seed=5)
    decoder_input_ids = sources.pop("decoder_input_ids")
    before = _generate(model, sources, num_beams=2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.05, fused=True)
    model.train()
    model(**sources, labels=decoder_input_ids).loss.backward()
    versions = [p._version for p in model.parameters()]
    optimizer.step()
    assert [p._version for p in model.parameters()] == versions  # the case: nothing says "changed"
    model.eval()
    after = _generate(model, sources, num_beams=2)
    with plain_kernels():
        reference = _generate(model, sources, num_beams=2)
    assert not torch.equal(torch.stack(before.scores), torch.stack(reference.scores))  # the step changed the model
    assert torch.equal(after.sequences, reference.sequences)
    torch.testing.assert_close(torch.stack(after.scores), torch.stack(reference.scores), rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        logits = model(**sources, decoder_input_ids=decoder_input_ids).logits
        with plain_kernels():
            assert torch.equal(logits, model(**sources, decoder_input_ids=decoder_input_ids).logits)


def test_onednn_linear_is_the_plain_layer_where_it_could_show():
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 40)
    x = torch.randn(3, 16, requires_grad=True)
    out = onednn_linear(layer, x)  # autograd on: exactly the module, with its gradient
    assert torch.equal(out, layer(x))
    out.sum().backward()
    assert x.grad is not None and layer.weight.grad is not None
    with torch.no_grad(), plain_kernels():
        assert torch.equal(onednn_linear(layer, x), layer(x))
    layer, x = layer.double(), x.detach().double()  # not fp32: the plain layer
    with torch.no_grad():
        assert torch.equal(onednn_linear(layer, x), layer(x))


# ---------------------------------------------------------------- attention of a cached step without SDPA's kernel
@pytest.mark.parametrize("mask", ["none", "bool", "additive"])
@pytest.mark.parametrize("queries", [1, 4])
def test_decode_step_attention_equals_torch_sdpa(mask, queries):
    """The masks come as transformers builds them for SDPA: boolean (True = may attend), additive, or none."""
    g = torch.Generator().manual_seed(queries)
    query, key, value = (torch.randn(3, 2, n, 8, generator=g) for n in (queries, 6, 6))
    allowed = torch.ones(3, 1, 1, 6, dtype=torch.bool)
    allowed[1, ..., 4:] = False  # a padded source
    allowed[2, ..., 2:] = False
    attn_mask = {"none": None, "bool": allowed, "additive": torch.zeros(allowed.shape).masked_fill(~allowed, -1e9)}[
        mask
    ]
    expected = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask, scale=0.3)
    output, weights = decode_step_attention(torch.nn.Module().eval(), query, key, value, attn_mask, scaling=0.3)
    assert weights is None  # as SDPA's integration
    torch.testing.assert_close(output, expected.transpose(1, 2))


@pytest.mark.parametrize("num_beams", [1, 4])
def test_cached_steps_of_an_sdpa_model_take_the_decode_step_kernel(monkeypatch, num_beams):
    """It is used where it is meant to be (else the end-to-end tests above could not fail), and only there."""
    calls = []

    def counting(module, query, *args, **kwargs):
        calls.append((module.is_causal, query.shape[-2]))
        return decode_step_attention(module, query, *args, **kwargs)

    monkeypatch.setattr(attention_module, "decode_step_attention", counting)
    model = tiny_model(attn_implementation="sdpa")
    sources = _padded_sources()
    with torch.no_grad():
        _generate(model, sources, num_beams=num_beams)
    assert calls and all(queries == 1 or (not causal and queries == num_beams) for causal, queries in calls)
    calls.clear()
    with torch.no_grad():
        _generate(model, sources, num_beams=num_beams, use_cache=False)  # no cache: SDPA's kernel throughout
    batch = random_batch(seed=5)
    model.train()
    model(**batch, labels=batch["decoder_input_ids"]).loss.backward()  # training: SDPA's kernel
    assert not calls

    # Fewer rows than DECODE_STEP_MIN_ROWS: SDPA's kernel. 4 sentences: beam search's self-attention has 16 rows.
    model.eval()
    monkeypatch.setattr(attention_module, "DECODE_STEP_MIN_ROWS", 5)
    with torch.no_grad():
        _generate(model, sources, num_beams=num_beams)
    assert all(causal and queries == 1 for causal, queries in calls) and bool(calls) == (num_beams > 1)
