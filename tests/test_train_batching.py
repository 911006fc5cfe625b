"""Tests of `train.batching`: the token-budget batch sampler and the padding report."""

from __future__ import annotations

import numpy as np
import pytest

from train.batching import LengthSortedSampler, TokenBudgetBatchSampler, padding_stats

MAX_TOKENS = 200


@pytest.fixture(scope="module")
def lengths() -> tuple[list[int], list[int]]:
    """Sentence-like lengths: sources 3..60 tokens, targets within ±30% of the source, many ties."""
    rng = np.random.default_rng(1)
    src = rng.integers(3, 61, size=1000)
    tgt = np.maximum(1, (src * rng.uniform(0.7, 1.3, size=1000)).round()).astype(int)
    return src.tolist(), tgt.tolist()


def padded_size(batch: list[int], src: list[int], tgt: list[int]) -> int:
    return len(batch) * max(max(src[i], tgt[i]) for i in batch)


def test_every_batch_within_budget_and_every_example_once(lengths) -> None:
    src, tgt = lengths
    sampler = TokenBudgetBatchSampler(src, tgt, MAX_TOKENS, seed=3)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == sampler.num_batches
        assert all(padded_size(batch, src, tgt) <= MAX_TOKENS for batch in batches)
        assert sorted(i for batch in batches for i in batch) == list(range(len(src)))


def test_batches_are_greedy_and_length_homogeneous(lengths) -> None:
    """Within a batch the sort key is ordered; adding the next example in sorted order would
    overflow the budget (checked from the sorted batches, independently of the cutter)."""
    src, tgt = lengths
    batches = list(TokenBudgetBatchSampler(src, tgt, MAX_TOKENS, shuffle=False))
    flat = [i for batch in batches for i in batch]
    keys = [(src[i], tgt[i]) for i in flat]
    assert keys == sorted(keys)
    for batch, following in zip(batches, batches[1:], strict=False):
        assert padded_size([*batch, following[0]], src, tgt) > MAX_TOKENS


def test_deterministic_under_seed_and_epoch_and_shuffled_between_epochs(lengths) -> None:
    src, tgt = lengths

    def epoch_batches(seed: int, epoch: int) -> list[list[int]]:
        sampler = TokenBudgetBatchSampler(src, tgt, MAX_TOKENS, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert epoch_batches(0, 1) == epoch_batches(0, 1)
    assert epoch_batches(0, 1) != epoch_batches(0, 2)
    assert epoch_batches(0, 1) != epoch_batches(1, 1)
    # the batch order changes, not only the tie-breaking inside batches
    first_lengths = [[src[i] for i in epoch_batches(0, e)[0]] for e in range(4)]
    assert len({tuple(x) for x in first_lengths}) > 1


def test_unshuffled_batches_are_identical_every_epoch(lengths) -> None:
    src, tgt = lengths
    sampler = TokenBudgetBatchSampler(src, tgt, MAX_TOKENS, shuffle=False)
    first = list(sampler)
    sampler.set_epoch(5)
    assert list(sampler) == first


@pytest.mark.parametrize("num_replicas", [2, 3, 7])
def test_replicas_get_equal_counts_of_disjoint_batches(lengths, num_replicas: int) -> None:
    src, tgt = lengths
    single = TokenBudgetBatchSampler(src, tgt, MAX_TOKENS, seed=5)
    single.set_epoch(2)
    reference = list(single)
    per_rank = []
    for rank in range(num_replicas):
        sampler = TokenBudgetBatchSampler(src, tgt, MAX_TOKENS, seed=5, num_replicas=num_replicas, rank=rank)
        sampler.set_epoch(2)
        per_rank.append(list(sampler))
        assert len(per_rank[-1]) == len(sampler) == -(-len(reference) // num_replicas)
    interleaved = [per_rank[step % num_replicas][step // num_replicas] for step in range(len(reference))]
    assert interleaved == reference  # positions are disjoint and together cover the epoch
    remainder = len(reference) % num_replicas
    if remainder:  # the ranks short of a batch repeat the first batches of the epoch
        padding = [per_rank[rank][-1] for rank in range(remainder, num_replicas)]
        assert padding == reference[: num_replicas - remainder]


def test_replicas_when_fewer_batches_than_replicas() -> None:
    samplers = [TokenBudgetBatchSampler([5, 5], [5, 5], 10, num_replicas=3, rank=r) for r in range(3)]
    assert [list(s) for s in samplers] == [[[0, 1]]] * 3


def test_invalid_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"2 example\(s\) have more than max_tokens=10 .*first indices \[1, 3\]"):
        TokenBudgetBatchSampler([3, 11, 4, 2], [3, 2, 4, 12], 10)
    with pytest.raises(ValueError, match="equally long"):
        TokenBudgetBatchSampler([1, 2], [1], 10)
    with pytest.raises(ValueError, match="empty"):
        TokenBudgetBatchSampler([], [], 10)
    with pytest.raises(ValueError, match="rank must be in"):
        TokenBudgetBatchSampler([1], [1], 10, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="max_tokens must be >= 1"):
        TokenBudgetBatchSampler([1], [1], 0)


def test_padding_stats_by_hand() -> None:
    src, tgt = [2, 4, 3, 3], [1, 1, 5, 1]
    stats = padding_stats([[0, 1], [2, 3]], src, tgt)
    # batch [0,1]: padded 2*4 + 2*1 = 10, real 6+2 = 8; batch [2,3]: padded 2*3 + 2*5 = 16, real 6+6 = 12
    assert stats.num_batches == 2 and stats.mean_batch_size == 2
    assert stats.pad_fraction == pytest.approx(1 - 20 / 26)
    assert 0 <= stats.random_pad_fraction < 1


def test_token_budget_pads_far_less_than_random_batches(lengths) -> None:
    src, tgt = lengths
    stats = padding_stats(list(TokenBudgetBatchSampler(src, tgt, MAX_TOKENS)), src, tgt)
    assert stats.pad_fraction < 0.1 < 0.3 < stats.random_pad_fraction


def test_length_sorted_sampler_is_longest_first_and_stable() -> None:
    assert list(LengthSortedSampler([3, 9, 3, 1, 9])) == [1, 4, 0, 2, 3]
