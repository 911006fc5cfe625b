"""BPE-dropout: a different subword segmentation of each training sentence in every epoch.

Not in the Transformer paper. Provilkov, Emelianenko and Voita (2020), "BPE-Dropout: Simple and Effective
Subword Regularization" (ACL), Algorithm 1: segment a word as BPE does, merging the adjacent pair of
highest priority (the earliest learned merge) again and again, but at every step drop each candidate
merge with probability p; when every candidate was dropped, or none is left, the word is done. p = 0 is
plain BPE. The model then sees each word split in several ways during training (rare words more often
in pieces, which it learns to compose) while translating with the deterministic segmentation. The
paper reports +1 to +3 BLEU on small data sets such as IWSLT at p = 0.1 on both sides, and uses it
for training only.

Hugging Face `tokenizers` implements the dropout in its BPE model (`BPE(dropout=p)`), but draws from
an unseeded random source, so a run could neither be repeated nor resumed to the same weights. Here
the merges are applied in Python with a random generator seeded by `(seed, epoch, example)`: every
epoch has its own segmentations, the same in every run with that seed, and a run resumed mid-epoch
sees the segmentations the uninterrupted run saw.

- `BpeDropout` reads a trained byte-level BPE tokenizer (`hf_vanilla_transformer.train_tokenizer`'s)
  and encodes text with dropout; `encode(text, random.Random(...), dropout=0.0)` gives exactly the
  tokenizer's ids (tested on Multi30k text; `benchmarks/bench_bpe_dropout.py` checks the whole training set).
- `EpochSegmentedDataset` wraps a tokenised training set: row `i` of epoch `e` is the pair segmented
  with dropout under `(seed, e, i)`, computed when the batch is collated. The token-budget batches
  (`train.batching`) stay cut on the deterministic lengths, so the batches hold the same pairs as
  without dropout and the number of steps per epoch does not change (the Trainer fixes it when
  training starts); their sequences are longer by the dropout's share (what that costs a step:
  `benchmarks/bench_bpe_dropout.py`).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from typing import Any

from torch.utils.data import Dataset


class BpeDropout:
    """Encode text with a trained BPE tokenizer's merges, dropping each candidate merge with probability `dropout`.

    Args:
        tokenizer: a `PreTrainedTokenizerFast` over a `tokenizers` BPE model without continuing-subword
            prefix or end-of-word suffix, such as `hf_vanilla_transformer.train_tokenizer`'s (byte-level).
        dropout: probability of dropping a candidate merge at each merge step (the paper's p; 0.1).
        max_source_length / max_target_length: a sampled segmentation longer than this (special tokens
            included) is replaced by the deterministic one, so that every pair stays within the limits the
            training set was filtered with.
    """

    def __init__(
        self,
        tokenizer: Any,
        dropout: float,
        *,
        max_source_length: int | None = None,
        max_target_length: int | None = None,
    ) -> None:
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"BPE dropout must be in [0, 1), got {dropout}")
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise TypeError(
                f"BPE-dropout needs a fast tokenizer (with backend_tokenizer), got {type(tokenizer).__name__}"
            )
        model = json.loads(backend.to_str())["model"]
        if model.get("type") != "BPE":
            raise ValueError(f"BPE-dropout needs a BPE tokenizer, got a {model.get('type')} model")
        if model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
            raise ValueError(
                "BPE-dropout here supports BPE models without continuing_subword_prefix / end_of_word_suffix"
            )
        self.tokenizer = tokenizer
        self.dropout = dropout
        self.max_source_length = max_source_length
        self.max_target_length = max_target_length
        self._backend = backend
        self._vocab: dict[str, int] = model["vocab"]
        self._unk_id = self._vocab.get(model["unk_token"]) if model.get("unk_token") else None
        merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
        self._ranks: dict[tuple[str, str], int] = {pair: rank for rank, pair in enumerate(merges)}
        self._added = [token.content for token in tokenizer.added_tokens_decoder.values()]
        self._prefix, self._suffix = _special_tokens_around_text(backend)

    def encode(self, text: str, rng: random.Random | None, dropout: float | None = None) -> list[int]:
        """Token ids of `text` with the special tokens the tokenizer adds, segmented with `dropout` (default:
        the instance's) drawing from `rng` (unused, and may be None, at dropout 0). Text holding an added
        token's content (e.g. "</s>") is encoded by the tokenizer itself, without dropout, since the tokenizer
        treats those spans apart."""
        p = self.dropout if dropout is None else dropout
        if any(token in text for token in self._added):
            return self._backend.encode(text).ids
        normalized = self._backend.normalizer.normalize_str(text) if self._backend.normalizer else text
        pre_tokenizer = self._backend.pre_tokenizer
        words = [word for word, _ in pre_tokenizer.pre_tokenize_str(normalized)] if pre_tokenizer else [normalized]
        ids = list(self._prefix)
        for word in words:
            for piece in self._merge(list(word), rng, p):
                token_id = self._vocab.get(piece, self._unk_id)
                if token_id is None:
                    raise ValueError(f"{piece!r} of {text!r} is not in the vocabulary, which has no unknown token")
                ids.append(token_id)
        ids.extend(self._suffix)
        return ids

    def _merge(self, symbols: list[str], rng: random.Random | None, dropout: float) -> list[str]:
        """Algorithm 1 of Provilkov et al. (2020): apply the highest-priority merge that survives dropout,
        until none is left; ties go to the leftmost pair, one merge per step. (A candidate is drawn for only
        if it would beat the best survivor so far: the outcome has the same distribution, with fewer draws.)"""
        ranks = self._ranks
        while len(symbols) > 1:
            best_rank, best = len(ranks), -1
            for i in range(len(symbols) - 1):
                rank = ranks.get((symbols[i], symbols[i + 1]))
                if rank is not None and rank < best_rank and not (dropout and rng.random() < dropout):
                    best_rank, best = rank, i
            if best < 0:
                break
            symbols[best : best + 2] = [symbols[best] + symbols[best + 1]]
        return symbols

    def pair(
        self, source: str, target: str, rng: random.Random, fallback: tuple[list[int], list[int]]
    ) -> tuple[list[int], list[int]]:
        """Source and target ids with dropout; a side over its length limit keeps its `fallback` ids."""
        src, tgt = self.encode(source, rng), self.encode(target, rng)
        if self.max_source_length is not None and len(src) > self.max_source_length:
            src = fallback[0]
        if self.max_target_length is not None and len(tgt) > self.max_target_length:
            tgt = fallback[1]
        return src, tgt


def _special_tokens_around_text(backend: Any) -> tuple[list[int], list[int]]:
    """The ids the tokenizer's post-processor puts before and after a single text (e.g. `[]`, `[</s>]`)."""
    probe = "a b"
    with_special = backend.encode(probe).ids
    plain = backend.encode(probe, add_special_tokens=False).ids
    for start in range(len(with_special) - len(plain) + 1):
        if with_special[start : start + len(plain)] == plain:
            return with_special[:start], with_special[start + len(plain) :]
    raise ValueError("cannot tell which special tokens the tokenizer's post-processor adds around a text")


class EpochSegmentedDataset(Dataset):
    """A tokenised training set whose pairs are segmented anew with BPE-dropout in every epoch.

    Row `i` has the columns of `dataset` (e.g. `input_ids`, `attention_mask`, `labels`) with `input_ids` and
    `labels` (and `attention_mask`) from `bpe_dropout` applied to `sources[i]` / `targets[i]` under the
    random generator seeded with `(seed, epoch, i)`. `set_epoch` selects the epoch; the batch sampler calls it
    (`train.batching.TokenBudgetBatchSampler(on_set_epoch=...)`). Segmenting happens in `__getitem__`, so
    batches skipped when resuming cost nothing, and the work is spread over the epoch (about 0.3 ms per
    Multi30k pair).
    """

    def __init__(
        self,
        dataset: Sequence[dict[str, Any]],
        sources: Sequence[str],
        targets: Sequence[str],
        bpe_dropout: BpeDropout,
        seed: int,
    ) -> None:
        if not len(dataset) == len(sources) == len(targets):
            raise ValueError(
                f"dataset, sources and targets must be equally long, got {len(dataset)}, {len(sources)}, {len(targets)}"
            )
        self.dataset = dataset
        self.sources = list(sources)
        self.targets = list(targets)
        self.bpe_dropout = bpe_dropout
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose segmentations the next rows have."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = dict(self.dataset[index])
        rng = random.Random(f"bpe-dropout/{self.seed}/{self.epoch}/{index}")  # str seeds hash with SHA-512: stable
        src, tgt = self.bpe_dropout.pair(
            self.sources[index], self.targets[index], rng, fallback=(row["input_ids"], row["labels"])
        )
        row["input_ids"], row["labels"] = src, tgt
        if "attention_mask" in row:
            row["attention_mask"] = [1] * len(src)
        return row
