"""`greedy_search.greedy_search`, the loop `generate(num_beams=1)` uses for calls of §6.1's kind, gives what
transformers' own greedy loop gives (`use_own_decoding_loops = False`), token for token, while sentences that have
ended leave the batch. No timings here."""

from __future__ import annotations

import itertools

import pytest
import torch

from hf_vanilla_transformer.decoding_call import DecodingCall
from hf_vanilla_transformer.greedy_search import first_argmax
from tests.helpers import both_loops, random_sources, tiny_model

# A small vocabulary makes </s> likely from a random model: sentences end at many different lengths.
CASES = list(
    itertools.product(
        ["sdpa", "eager"],
        [{}, {"max_new_tokens": 6}, {"min_new_tokens": 4}, {"max_new_tokens": 5, "min_new_tokens": 5}],
        [8, 24, 200],  # vocabulary
    )
)


@pytest.mark.parametrize("case", range(len(CASES)))
def test_same_translations_as_transformers_loop(case: int) -> None:
    kernel, lengths, vocab_size = CASES[case]
    model = tiny_model(seed=case, vocab_size=vocab_size, attn_implementation=kernel)
    batch = random_sources(seed=case, batch=1 + case % 7, vocab_size=vocab_size)
    ours, theirs = both_loops(model, batch, num_beams=1, **lengths)
    assert torch.equal(ours, theirs), (ours, theirs)


def test_in_bf16() -> None:
    """Weights in bf16 (`translate --dtype bfloat16`): transformers takes the argmax of the logits cast to fp32."""
    model = tiny_model(seed=7, vocab_size=24).to(torch.bfloat16)
    ours, theirs = both_loops(model, random_sources(seed=7, batch=6, vocab_size=24), num_beams=1)
    assert torch.equal(ours, theirs)


def test_the_per_sentence_limit_clamped_to_the_position_table() -> None:
    """§6.1's input length + 50, with a position table shorter than that: both loops stop at the table."""
    model = tiny_model(seed=3, vocab_size=200, max_position_embeddings=12)
    ours, theirs = both_loops(model, random_sources(seed=3, batch=5, vocab_size=200), num_beams=1, min_new_tokens=11)
    assert ours.shape[1] == 12 and torch.equal(ours, theirs)


def test_the_per_sentence_limit_of_input_length_plus_50() -> None:
    """With `max_new_tokens_over_input` = 2, each sentence stops at its own length + 2 in both loops."""
    model = tiny_model(seed=5, vocab_size=200)
    model.generation_config.max_new_tokens_over_input = 2
    batch = random_sources(seed=5, batch=6, vocab_size=200)
    ours, theirs = both_loops(model, batch, num_beams=1)
    assert torch.equal(ours, theirs)
    assert ours.shape[1] == 1 + int(batch["attention_mask"].sum(1).max()) + 2


def test_ended_sentences_leave_the_batch() -> None:
    """The decoder runs on fewer rows once some sentences have ended, and the results stay those of transformers'
    loop, which keeps every sentence to the end, feeding it padding."""
    model = tiny_model(seed=1, vocab_size=8)
    batch = random_sources(seed=5, batch=6, vocab_size=8)
    rows: list[int] = []
    hook = model.model.decoder.register_forward_pre_hook(
        lambda module, args, kwargs: rows.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    ours, theirs = both_loops(model, batch, num_beams=1)
    hook.remove()
    steps = ours.shape[1] - 1
    assert torch.equal(ours, theirs)
    assert rows[:steps] == sorted(rows[:steps], reverse=True) and rows[0] == 6 and rows[steps - 1] < 6, rows
    assert rows[steps:] == [6] * steps  # transformers' loop: every sentence to the end


@pytest.mark.parametrize("options", [{}, {"decoder_start_token_id": 3}, {"eos_token_id": 4}])
def test_without_an_attention_mask_and_with_other_special_tokens(options: dict) -> None:
    """The mask transformers infers from the padding id, and special tokens given to `generate()`."""
    model = tiny_model(seed=4, vocab_size=12)
    batch = random_sources(seed=4, batch=5, vocab_size=12)
    ours, theirs = both_loops(model, {"input_ids": batch["input_ids"]}, num_beams=1, **options)
    assert torch.equal(ours, theirs)


def test_greedy_calls_it_covers() -> None:
    model = tiny_model(seed=0)
    call = DecodingCall.of(model, model.generation_config, {"num_beams": 1, "do_sample": False}, gnmt=True)
    assert call is not None and call.greedy and call.max_new_tokens_over_input == 50
    assert DecodingCall.of(model, model.generation_config, {"num_beams": 1, "do_sample": True}, gnmt=True) is None


@pytest.mark.parametrize("beams", [1, 3])
@pytest.mark.parametrize("own_loops", [True, False])
def test_a_padded_batch_without_its_mask_decodes_as_with_it(beams: int, own_loops: bool) -> None:
    """transformers 5 infers no attention mask for encoder-decoder models; `generate()` infers it from the padding
    id, as transformers 4 did, in either loop, so that padding is never attended."""
    model = tiny_model(seed=4, vocab_size=12)
    model.use_own_decoding_loops = own_loops
    batch = random_sources(seed=4, batch=5, vocab_size=12)
    with torch.no_grad():
        without = model.generate(input_ids=batch["input_ids"], num_beams=beams)
        with_mask = model.generate(**batch, num_beams=beams)
    assert torch.equal(without, with_mask)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("width", [5, 255, 256, 257, 300, 383, 384, 5000, 8000])
@pytest.mark.parametrize("kind", ["ties", "nan", "some -inf", "all -inf", "inf"])
def test_first_argmax_is_argmax(dtype: torch.dtype, width: int, kind: str) -> None:
    """`first_argmax` is torch's `argmax` exactly: the first of equal scores (small integer scores make many ties,
    across blocks and within them), NaN counted as the largest as `argmax` counts it, infinities, rows of -inf (every
    token forbidden), widths shorter than two blocks, a multiple of the block and with scores left after the last
    block."""
    generator = torch.Generator().manual_seed(width)
    for _ in range(20):
        scores = torch.randint(-3, 4, (6, width), generator=generator).float()
        where = torch.rand(6, width, generator=generator)
        if kind == "nan":
            scores[where < 0.005] = float("nan")
            scores[0, -1] = float("nan")  # only in the scores after the last block, in one row
            scores[0, :-1] = scores[0, :-1].nan_to_num(0.0)
        elif kind == "some -inf":
            scores[where < 0.5] = float("-inf")
        elif kind == "all -inf":
            scores[:] = float("-inf")
        elif kind == "inf":
            scores[where < 0.002] = float("inf")
        scores = scores.to(dtype)
        assert torch.equal(first_argmax(scores), scores.argmax(dim=-1))
