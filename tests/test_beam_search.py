"""`beam_search.beam_search`, the loop `generate()` uses for beam search with §6.1's options, gives what
transformers' own beam-search loop gives (`use_own_decoding_loops = False`), token for token, while sentences
whose search is done leave the batch. The calls it does not cover go to transformers' loop. No timings here."""

from __future__ import annotations

import itertools

import pytest
import torch
from transformers import LogitsProcessorList, MinLengthLogitsProcessor

from hf_vanilla_transformer.beam_search import NEVER, best_candidates
from hf_vanilla_transformer.decoding_call import DecodingCall
from tests.helpers import both_loops, random_sources, tiny_model, transformers_loop

# A small vocabulary makes </s> likely from a random model: hypotheses end at many different lengths.
CASES = list(
    itertools.product(
        [2, 4, 5],  # beams
        [0.6, 2.2, 0.0, -0.5],  # length penalty alpha
        ["gnmt", "hf"],  # its form
        [{}, {"max_new_tokens": 6}, {"min_new_tokens": 4}],  # length options
    )
)


@pytest.mark.parametrize("case", range(len(CASES)))
def test_same_translations_as_transformers_loop(case: int) -> None:
    beams, alpha, form, lengths = CASES[case]
    vocab_size = (8, 24, 200)[case % 3]
    model = tiny_model(seed=case, vocab_size=vocab_size, attn_implementation=("sdpa", "eager")[case % 2])
    batch = random_sources(seed=case, batch=1 + case % 7, vocab_size=vocab_size)
    ours, theirs = both_loops(model, batch, num_beams=beams, length_penalty=alpha, length_penalty_form=form, **lengths)
    assert torch.equal(ours, theirs), (ours, theirs)


def test_the_per_sentence_limit_clamped_to_the_position_table() -> None:
    """§6.1's input length + 50, with a position table shorter than that: both loops stop at the table."""
    model = tiny_model(seed=3, vocab_size=200, max_position_embeddings=12)
    batch = random_sources(seed=3, batch=5, vocab_size=200)
    model.generation_config.eos_token_id = 2
    ours, theirs = both_loops(model, batch, num_beams=3, min_new_tokens=11)
    assert ours.shape[1] == 12 and torch.equal(ours, theirs)


def test_finished_sentences_leave_the_batch() -> None:
    """The decoder runs on fewer rows once some sentences are done, and the results stay those of transformers'
    loop, which keeps every sentence to the end."""
    model = tiny_model(seed=1, vocab_size=8)
    batch = random_sources(seed=5, batch=6, vocab_size=8)
    rows: list[int] = []
    hook = model.model.decoder.register_forward_pre_hook(
        lambda module, args, kwargs: rows.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    with torch.no_grad():
        ours = model.generate(**batch, num_beams=4)
    hook.remove()
    with torch.no_grad(), transformers_loop(model):
        theirs = model.generate(**batch, num_beams=4)
    assert torch.equal(ours, theirs)
    assert rows[0] == 6 * 4 and rows[-1] < 6 * 4, rows  # some sentences left before the last step
    assert rows == sorted(rows, reverse=True) and all(n % 4 == 0 for n in rows)


def test_one_sentence_alone_and_in_a_batch() -> None:
    model = tiny_model(seed=2, vocab_size=24)
    batch = random_sources(seed=2, batch=5, vocab_size=24)
    with torch.no_grad():
        together = model.generate(**batch, num_beams=4)
        for i in range(5):
            n = int(batch["attention_mask"][i].sum())
            alone = model.generate(input_ids=batch["input_ids"][i : i + 1, :n], num_beams=4)
            length = alone.shape[1]
            assert torch.equal(together[i, :length], alone[0])
            assert (together[i, length:] == model.config.eos_token_id).all()  # transformers' filler


@pytest.mark.parametrize(
    "options",
    [
        {"do_sample": True},
        {"num_return_sequences": 2},
        {"return_dict_in_generate": True, "output_scores": True},
        {"early_stopping": True},
        {"repetition_penalty": 1.3},
        {"no_repeat_ngram_size": 2},
        {"min_length": 3},
        {"use_cache": False},
        {"logits_processor": LogitsProcessorList([MinLengthLogitsProcessor(3, eos_token_id=2)])},
        {"decoder_input_ids": torch.ones(2, 1, dtype=torch.long)},
        {"eos_token_id": [2, 3]},
        {"pad_token_id": 5},  # a padding id other than the model's
    ],
)
def test_other_calls_go_to_transformers_loop(options: dict) -> None:
    model = tiny_model(seed=0)
    config = model.generation_config
    assert DecodingCall.of(model, config, {"attention_mask": None, **options}, gnmt=True) is None


def test_the_calls_it_covers() -> None:
    model = tiny_model(seed=0)
    config = model.generation_config
    call = DecodingCall.of(model, config, {"attention_mask": None}, gnmt=True)
    assert call == DecodingCall(
        num_beams=4,
        length_penalty=0.6,
        gnmt=True,
        max_length=21,
        max_new_tokens_over_input=50,
        min_new_tokens=0,
        decoder_start_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    call = DecodingCall.of(model, config, {"num_beams": 5, "max_new_tokens": 7, "do_sample": False}, gnmt=False)
    assert (call.num_beams, call.max_length, call.max_new_tokens_over_input, call.gnmt) == (5, 8, None, False)
    model.train()
    assert DecodingCall.of(model, config, {}, gnmt=True) is None  # dropout on: not a translation


@pytest.mark.parametrize("options", [{}, {"decoder_start_token_id": 3}, {"eos_token_id": 4}])
def test_without_an_attention_mask_and_with_other_special_tokens(options: dict) -> None:
    """The mask transformers infers from the padding id, and special tokens given to `generate()`."""
    model = tiny_model(seed=4, vocab_size=12)
    batch = random_sources(seed=4, batch=5, vocab_size=12)
    ours, theirs = both_loops(model, {"input_ids": batch["input_ids"]}, num_beams=3, **options)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize(("sentences", "beams", "vocab"), [(1, 1, 2), (3, 4, 5), (5, 4, 8000), (2, 5, 9)])
def test_best_candidates_are_those_of_every_sum_ranked(sentences: int, beams: int, vocab: int) -> None:
    """`best_candidates` ranks each beam's best log-probabilities only; transformers ranks all k * V sums of beam
    score and log-probability. The same candidates, scores and order, also where a beam has fewer than 2k tokens
    (but for ties: see below)."""
    g = torch.Generator().manual_seed(vocab)
    log_probs = torch.log_softmax(3 * torch.randn(sentences, beams, vocab, generator=g), dim=-1)
    beam_scores = -4 * torch.rand(sentences, beams, generator=g)
    beam_scores[0, 1:] = NEVER  # the first step: only the first beam proposes
    count = min(2 * beams, beams * vocab)
    sums = (log_probs + beam_scores[:, :, None]).view(sentences, beams * vocab)
    expected_scores, expected = torch.topk(sums, count)
    scores, parents, tokens = best_candidates(log_probs, beam_scores, count)
    assert torch.equal(scores, expected_scores)
    # Sums with a NEVER beam score all round to NEVER: such tied candidates may come in another order.
    real = expected_scores > NEVER / 2
    assert torch.equal(parents[real], (expected // vocab)[real])
    assert torch.equal(tokens[real], (expected % vocab)[real])
    assert bool(real[1:].all())
