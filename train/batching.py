"""Token-budget batching: batches of sentence pairs of similar length (paper §5.1).

"Sentence pairs were batched together by approximate sequence length. Each training batch
contained a set of sentence pairs containing approximately 25000 source tokens and 25000 target
tokens." (Vaswani et al., 2017, §5.1). This is fairseq's `--max-tokens`; the Hugging Face Trainer
only offers a fixed number of sentences per batch, which wastes compute on padding and makes the
number of tokens per update vary with sentence length.

`TokenBudgetBatchSampler` follows fairseq: examples are sorted by (source length, target length),
cut greedily into batches whose *padded* size `len(batch) * max(longest source, longest target)`
stays within `max_tokens`, and the order of the batches is shuffled every epoch. A budget counts
padded tokens per side (fairseq's `num_tokens`), so `max_tokens=25000` bounds each of the source
and target tensors of a batch to at most 25000 positions, as in the paper.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from torch.utils.data import Sampler


class TokenBudgetBatchSampler(Sampler[list[int]]):
    """Yield lists of example indices whose padded size stays within `max_tokens`.

    Each epoch:

    1. sort the examples by (source length, target length); ties are broken at random (under
       `seed` and the epoch), so equally long examples meet different partners every epoch;
    2. cut the sorted list greedily: a batch grows while `(len(batch) + 1) * max_len <= max_tokens`,
       with `max_len` the longest source or target in the batch including the candidate;
    3. shuffle the order of the batches (under `seed` and the epoch).

    Every example is in exactly one batch per epoch, and the batches are a deterministic function
    of `(seed, epoch)`. Call `set_epoch(epoch)` before each epoch, as with `DistributedSampler`
    (the Trainer does). With `shuffle=False` the batches come in ascending length order and do not
    change between epochs (for evaluation).

    Distributed data parallel: every replica computes the same batches and takes every
    `num_replicas`-th one starting at `rank`, so replicas see disjoint batches. When the number of
    batches is not a multiple of `num_replicas`, the first batches of the epoch are repeated to
    pad it, so that every replica runs the same number of steps; those few examples are then seen
    twice in that epoch.

    Sorting and batch sizes depend only on the lengths, so the number of batches is the same in
    every epoch. An example longer than `max_tokens` on either side is an error (raised at
    construction, listing the examples): drop such pairs first with `train.data.filter_by_length`.

    Args:
        src_lengths / tgt_lengths: number of tokens of each example's source and target.
        max_tokens: maximum padded tokens per batch and side.
        shuffle: randomise tie-breaking and the order of batches.
        seed: base seed; the randomness of epoch `e` is seeded with `(seed, e)`.
        num_replicas / rank: data-parallel world size and this process's rank.
        on_set_epoch: called with the epoch by `set_epoch`, for a dataset that changes with the epoch in step
            with the batches (`train.bpe_dropout.EpochSegmentedDataset.set_epoch`).
    """

    def __init__(
        self,
        src_lengths: Sequence[int],
        tgt_lengths: Sequence[int],
        max_tokens: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        on_set_epoch: Callable[[int], None] | None = None,
    ) -> None:
        self.src_lengths = np.asarray(src_lengths, dtype=np.int64)
        self.tgt_lengths = np.asarray(tgt_lengths, dtype=np.int64)
        _check_arguments(self.src_lengths, self.tgt_lengths, max_tokens, num_replicas, rank)
        self.max_tokens = max_tokens
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.on_set_epoch = on_set_epoch
        self.epoch = 0
        self._longer_side = np.maximum(self.src_lengths, self.tgt_lengths).tolist()
        # Tie-breaking never changes the sequence of lengths, hence nor the number of batches.
        self.num_batches = len(self._cut(np.lexsort((self.tgt_lengths, self.src_lengths))))
        """Batches per epoch over all replicas, before padding to a multiple of `num_replicas`."""

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose shuffling the next iteration uses."""
        self.epoch = epoch
        if self.on_set_epoch is not None:
            self.on_set_epoch(epoch)

    def __len__(self) -> int:
        """Batches this replica yields per epoch."""
        return math.ceil(self.num_batches / self.num_replicas)

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.global_batches()[self.rank :: self.num_replicas]

    def global_batches(self) -> list[list[int]]:
        """All replicas' batches of the current epoch in order, padded to a multiple of `num_replicas`."""
        rng = np.random.default_rng([self.seed, self.epoch])
        batches = self._cut(self._sorted_indices(rng))
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        padded_size = len(self) * self.num_replicas
        return [batches[i % len(batches)] for i in range(padded_size)]

    def _sorted_indices(self, rng: np.random.Generator) -> np.ndarray:
        """Indices sorted by (source, target) length; a random pre-permutation breaks ties."""
        order = rng.permutation(len(self.src_lengths)) if self.shuffle else np.arange(len(self.src_lengths))
        by_length = np.lexsort((self.tgt_lengths[order], self.src_lengths[order]))  # last key is primary
        return order[by_length]

    def _cut(self, indices: np.ndarray) -> list[list[int]]:
        """Greedily split length-sorted indices into batches within the token budget."""
        batches: list[list[int]] = []
        batch: list[int] = []
        longest = 0
        for index in indices.tolist():
            length = self._longer_side[index]
            if batch and (len(batch) + 1) * max(longest, length) > self.max_tokens:
                batches.append(batch)
                batch, longest = [], 0
            batch.append(index)
            longest = max(longest, length)
        batches.append(batch)
        return batches


def _check_arguments(src: np.ndarray, tgt: np.ndarray, max_tokens: int, num_replicas: int, rank: int) -> None:
    if src.ndim != 1 or src.shape != tgt.shape:
        raise ValueError(f"src_lengths and tgt_lengths must be flat and equally long, got {src.shape} and {tgt.shape}")
    if len(src) == 0:
        raise ValueError("cannot batch an empty dataset")
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    if not 0 <= rank < num_replicas:
        raise ValueError(f"rank must be in [0, num_replicas={num_replicas}), got {rank}")
    if min(src.min(), tgt.min()) < 0:
        raise ValueError("lengths must be non-negative")
    too_long = np.flatnonzero(np.maximum(src, tgt) > max_tokens)
    if len(too_long):
        raise ValueError(
            f"{len(too_long)} example(s) have more than max_tokens={max_tokens} tokens on a side "
            f"(first indices {too_long[:5].tolist()}); drop them with train.data.filter_by_length"
        )


@dataclass(frozen=True)
class PaddingStats:
    """Padding share of a set of batches, against random batches of the same mean size.

    `pad_fraction` is padding tokens / all tokens of the padded source and target tensors.
    """

    num_batches: int
    mean_batch_size: float
    pad_fraction: float
    random_pad_fraction: float


def padding_stats(
    batches: Sequence[Sequence[int]], src_lengths: Sequence[int], tgt_lengths: Sequence[int], seed: int = 0
) -> PaddingStats:
    """Padding share of `batches`, and of the same examples batched at random for comparison.

    The random baseline shuffles the examples of `batches` (under `seed`) and cuts them into
    consecutive batches of the rounded mean batch size, like the Trainer's default sampler with
    a fixed `per_device_train_batch_size`.
    """
    src, tgt = np.asarray(src_lengths), np.asarray(tgt_lengths)
    examples = np.concatenate([np.asarray(batch, dtype=np.int64) for batch in batches])
    size = max(1, round(len(examples) / len(batches)))
    shuffled = np.random.default_rng(seed).permutation(examples)
    random_batches = [shuffled[start : start + size] for start in range(0, len(shuffled), size)]
    return PaddingStats(
        num_batches=len(batches),
        mean_batch_size=len(examples) / len(batches),
        pad_fraction=_pad_fraction(batches, src, tgt),
        random_pad_fraction=_pad_fraction(random_batches, src, tgt),
    )


def _pad_fraction(batches: Sequence[Sequence[int]], src: np.ndarray, tgt: np.ndarray) -> float:
    real = padded = 0
    for batch in batches:
        index = np.asarray(batch, dtype=np.int64)
        real += int(src[index].sum() + tgt[index].sum())
        padded += len(index) * int(src[index].max() + tgt[index].max())
    return 1 - real / padded


class LengthSortedSampler(Sampler[int]):
    """Indices from longest to shortest, for evaluation batches with little padding.

    Predictions then come in this order, not the dataset's; metrics computed from predictions and
    labels together are unaffected. The longest batch comes first, so memory errors show at once.
    """

    def __init__(self, lengths: Sequence[int]) -> None:
        self.order = np.argsort(-np.asarray(lengths), kind="stable").tolist()

    def __len__(self) -> int:
        return len(self.order)

    def __iter__(self) -> Iterator[int]:
        return iter(self.order)
