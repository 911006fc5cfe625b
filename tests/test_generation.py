"""Decoding (§6.1, `generation.py`): the KV cache, greedy and beam search, the GNMT length penalty,
the paper's default length limit, and the decoding defaults' home (`generation_config`)."""

import json
import logging
import warnings

import pytest
import torch
from transformers import AutoModelForSeq2SeqLM

from hf_vanilla_transformer.compat import CACHE_NAME, output_cache
from tests.helpers import random_batch, tiny_model


# ---------------------------------------------------------------- generation (§6.1)
def _sources():
    batch = random_batch(batch=3, src_len=6)
    batch.pop("decoder_input_ids")
    return batch


@pytest.mark.parametrize("num_beams", [1, 4])
@torch.no_grad()
def test_cached_equals_uncached_decoding(num_beams):
    model = tiny_model()
    kwargs = dict(num_beams=num_beams, max_new_tokens=10, do_sample=False)
    cached = model.generate(**_sources(), use_cache=True, **kwargs)
    uncached = model.generate(**_sources(), use_cache=False, **kwargs)
    assert torch.equal(cached, uncached)


@torch.no_grad()
def test_incremental_decoder_equals_full_pass():
    model = tiny_model()
    batch = random_batch()
    full = model(**batch, use_cache=False).logits
    enc = model.get_encoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    past, steps = None, []
    for t in range(batch["decoder_input_ids"].shape[1]):
        out = model(
            encoder_outputs=enc,
            attention_mask=batch["attention_mask"],
            decoder_input_ids=batch["decoder_input_ids"][:, t : t + 1],
            cache=past,
            use_cache=True,
        )
        past = output_cache(out)
        steps.append(out.logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-5, atol=1e-5)
    # Cross-attention K/V are computed once and reused: the cross cache never grows.
    assert past.cross_attention_cache.get_seq_length() == batch["input_ids"].shape[1]


@torch.no_grad()
def test_greedy_equals_beam_one():
    model = tiny_model()
    greedy = model.generate(**_sources(), num_beams=1, max_new_tokens=10)
    manual = _greedy_by_hand(model, _sources(), steps=10)
    assert torch.equal(greedy, manual)
    assert torch.equal(model.generate(**_sources(), num_beams=1, early_stopping=True, max_new_tokens=10), greedy)


def _greedy_by_hand(model, batch, steps):
    ids = torch.full((batch["input_ids"].shape[0], 1), model.config.decoder_start_token_id)
    done = torch.zeros(ids.shape[0], dtype=torch.bool)
    for _ in range(steps):
        nxt = model(**batch, decoder_input_ids=ids).logits[:, -1].argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, model.config.pad_token_id), nxt)
        ids = torch.cat([ids, nxt[:, None]], dim=1)
        done |= nxt == model.config.eos_token_id
        if done.all():
            break
    return ids


@torch.no_grad()
def test_beam_scores_use_the_gnmt_length_penalty():
    # §6.1 / Wu et al. (2016): score = log P(Y|X) / ((5 + |Y|) / 6) ** alpha.
    model = tiny_model()
    alpha = 0.6
    out = model.generate(
        **_sources(),
        num_beams=4,
        length_penalty=alpha,
        max_new_tokens=8,
        return_dict_in_generate=True,
        output_scores=True,
    )
    steps = model.compute_transition_scores(out.sequences, out.scores, out.beam_indices, normalize_logits=False)
    for row in range(out.sequences.shape[0]):
        length = int((out.beam_indices[row] >= 0).sum())
        log_prob = steps[row, :length].sum().item()
        assert out.sequences_scores[row].item() == pytest.approx(log_prob / ((5 + length) / 6) ** alpha, rel=1e-5)


@torch.no_grad()
def test_hf_length_penalty_option():
    model = tiny_model()
    out = model.generate(
        **_sources(),
        length_penalty_form="hf",
        num_beams=4,
        length_penalty=0.6,
        max_new_tokens=8,
        return_dict_in_generate=True,
        output_scores=True,
    )
    steps = model.compute_transition_scores(out.sequences, out.scores, out.beam_indices, normalize_logits=False)
    length = int((out.beam_indices[0] >= 0).sum())
    assert out.sequences_scores[0].item() == pytest.approx(steps[0, :length].sum().item() / length**0.6, rel=1e-5)


@torch.no_grad()
def test_default_generation_is_beam_four_up_to_input_plus_50():
    model = tiny_model()
    src = _sources()
    out = model.generate(**src, suppress_tokens=[model.config.eos_token_id])  # never stops early
    assert out.shape[1] == 1 + src["input_ids"].shape[1] + 50
    assert torch.equal(model.generate(**src, max_new_tokens=5), model.generate(**src, num_beams=4, max_new_tokens=5))


def test_empty_batch_is_rejected_clearly():
    model = tiny_model()
    empty = torch.zeros(0, 5, dtype=torch.long)
    with pytest.raises(ValueError, match="empty"):
        model.generate(input_ids=empty)
    with pytest.raises(ValueError, match="empty"):
        model(input_ids=empty, decoder_input_ids=empty)


# ---------------------------------------------------------------- one output per sentence, whatever the batch
@torch.no_grad()
@pytest.mark.parametrize("num_beams", [1, 4])
def test_each_sentence_is_capped_by_its_own_length(num_beams):
    """A short sentence decodes the same alone and next to a long one (§6.1: input length + 50)."""
    model = tiny_model()
    eos = model.config.eos_token_id
    short = torch.tensor([[5, 6, 7, eos]])
    long = torch.tensor([[5, 6, 7, 8, 9, 10, 11, 12, 13, 14, eos]])
    alone = model.generate(input_ids=short, num_beams=num_beams, suppress_tokens=[eos])
    batch = torch.nn.utils.rnn.pad_sequence([short[0], long[0]], batch_first=True, padding_value=0)
    together = model.generate(
        input_ids=batch, attention_mask=(batch != 0).long(), num_beams=num_beams, suppress_tokens=[eos]
    )
    assert alone.shape[1] == 1 + 4 + 50
    assert together.shape[1] == 1 + 11 + 50
    n = alone.shape[1]
    assert torch.equal(together[0, :n], alone[0])
    assert (together[0, n:] == model.generation_config.pad_token_id).all() or (together[0, n:] == eos).all()


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_num_beams_is_validated(bad):
    model = tiny_model()
    with pytest.raises(ValueError, match="num_beams must be a positive integer"):
        model.generate(**_sources(), num_beams=bad)


def test_length_penalty_form_is_validated():
    with pytest.raises(ValueError, match="length_penalty_form must be one of"):
        tiny_model().generate(**_sources(), length_penalty_form="t5")


# ---------------------------------------------------------------- the decoding defaults' one home
def test_paper_decoding_is_the_saved_generation_config(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "generation_config.json").read_text())
    assert saved["num_beams"] == 4 and saved["length_penalty"] == 0.6
    assert saved["length_penalty_form"] == "gnmt" and saved["max_new_tokens_over_input"] == 50
    assert "max_length" not in saved  # a saved max_length would make max_new_tokens warn on every call
    assert "length_penalty_form" not in json.loads((tmp_path / "config.json").read_text())


@torch.no_grad()
def test_a_model_saved_with_other_decoding_is_decoded_with_its_own(tmp_path):
    model = tiny_model()
    model.generation_config.num_beams = 2
    model.generation_config.length_penalty_form = "hf"
    model.save_pretrained(tmp_path)
    loaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path).eval()
    assert loaded.generation_config.num_beams == 2 and loaded.generation_config.length_penalty_form == "hf"
    src = _sources()
    expected = model.generate(**src, num_beams=2, length_penalty_form="hf", max_new_tokens=6)
    assert torch.equal(loaded.generate(**src, max_new_tokens=6), expected)


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_unreadable_generation_config_falls_back_to_the_paper_with_a_warning(tmp_path, damage, caplog):
    tiny_model().save_pretrained(tmp_path)
    path = tmp_path / "generation_config.json"
    if damage == "missing":
        path.unlink()
    else:
        path.write_text('{"num_beams": 4, "length_pen')
    with caplog.at_level(logging.WARNING):
        loaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    assert "no readable generation_config.json" in caplog.text and str(tmp_path) in caplog.text
    config = loaded.generation_config
    assert (config.num_beams, config.length_penalty, config.length_penalty_form) == (4, 0.6, "gnmt")
    assert config.max_new_tokens_over_input == 50


@torch.no_grad()
def test_decoding_prints_no_warning_with_or_without_a_length(tmp_path, caplog):
    """No deprecation or length warning from our code, whatever length the user passes (or none)."""
    tiny_model().save_pretrained(tmp_path)
    model = AutoModelForSeq2SeqLM.from_pretrained(tmp_path).eval()
    src = _sources()
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING):
        warnings.simplefilter("error")
        for kwargs in ({}, {"max_new_tokens": 5}, {"max_length": 8}, {"num_beams": 1}, {"use_cache": False}):
            model.generate(**src, **kwargs)
        model(**src, decoder_input_ids=src["input_ids"][:, :2], use_cache=True)
    assert caplog.text == ""


@torch.no_grad()
def test_forward_takes_the_cache_under_both_names():
    """transformers up to 5.23 calls it `past_key_values`, from 5.24 `cache`; outputs use the installed name."""
    model = tiny_model()
    batch = random_batch()
    first = model(**{**batch, "decoder_input_ids": batch["decoder_input_ids"][:, :2]}, use_cache=True)
    cache = output_cache(first)
    assert cache is not None and cache.get_seq_length() == 2
    assert CACHE_NAME in type(first).__dataclass_fields__
    step = {**batch, "decoder_input_ids": batch["decoder_input_ids"][:, 2:3]}
    import copy

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        new = model(**step, cache=copy.deepcopy(cache), use_cache=True).logits
        old = model(**step, past_key_values=copy.deepcopy(cache), use_cache=True).logits
    torch.testing.assert_close(new, old)
    deprecations = [w for w in caught if "past_key_values" in str(w.message)]
    assert bool(deprecations) == (CACHE_NAME == "cache")  # the old name warns only where it is deprecated
    with pytest.raises(ValueError, match="both `cache` and `past_key_values`"):
        model(**step, cache=copy.deepcopy(cache), past_key_values=copy.deepcopy(cache))


@torch.no_grad()
def test_beam_search_reorders_only_the_self_attention_cache():
    """BeamSearchCache skips the cross-attention reorder (identical K/V for all beams of a sentence):
    the output equals decoding without any cache, and the cross cache stays one copy per source position."""
    from hf_vanilla_transformer.beam_cache import BeamSearchCache

    model = tiny_model()
    src = _sources()
    out = model.generate(**src, num_beams=4, max_new_tokens=12, return_dict_in_generate=True)
    cache = getattr(out, CACHE_NAME)
    assert isinstance(cache, BeamSearchCache)
    assert cache.cross_attention_cache.get_seq_length() == src["input_ids"].shape[1]
    uncached = model.generate(**src, num_beams=4, max_new_tokens=12, use_cache=False)
    assert torch.equal(out.sequences, uncached)
