"""Tests of `train.bpe_dropout`: BPE-dropout (Provilkov et al., 2020) against the tokenizer whose merges it samples.

Without dropout the segmentation must be the `tokenizers` library's own, id for id (on Multi30k text and
edge cases); with dropout every sample must still decode to its text, and on a toy vocabulary the
segmentations must come with the probabilities Algorithm 1 of the paper gives in closed form.
"""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from datasets import Dataset, DatasetDict
from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast

import hf_vanilla_transformer as hvt
from tests._tiny_tokenizer import SAMPLE_LINES, tiny_tokenizer
from tests.helpers import multi30k_file
from train.bpe_dropout import BpeDropout, EpochSegmentedDataset
from train.config import TrainConfig
from train.data import tokenize_dataset
from train.train import bpe_dropout

EDGE_CASES = [
    "",
    " ",
    "  two  spaces ",
    "tabs\tand\nnewlines",
    "emoji 🙂 and 中文字符",
    "café's naïve résumé",
    "ends with </s>",
    "<unk> first",
]


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    lines = []
    for lang in ("de", "en"):
        lines += multi30k_file(f"train.{lang}").read_text(encoding="utf-8").splitlines()[:1500]
    return lines


@pytest.fixture(scope="module")
def tokenizer(corpus):
    return hvt.train_tokenizer(texts=corpus, vocab_size=1500)


def test_without_dropout_it_is_the_tokenizers_segmentation(tokenizer, corpus) -> None:
    bpe = BpeDropout(tokenizer, 0.1)
    rng = random.Random(0)
    texts = corpus + EDGE_CASES
    expected = tokenizer(texts, text_target=texts)
    for text, input_ids, labels in zip(texts, expected["input_ids"], expected["labels"], strict=True):
        assert bpe.encode(text, rng, dropout=0.0) == input_ids == labels, text


def test_without_dropout_it_is_the_tokenizers_segmentation_with_a_prefix_space_pre_tokenizer() -> None:
    tokenizer = tiny_tokenizer()  # ByteLevel(add_prefix_space=True), no normaliser
    bpe = BpeDropout(tokenizer, 0.5)
    for text in SAMPLE_LINES + EDGE_CASES:
        assert bpe.encode(text, random.Random(0), dropout=0.0) == tokenizer(text).input_ids, text


def test_samples_decode_to_their_text_and_are_longer_on_average(tokenizer, corpus) -> None:
    bpe = BpeDropout(tokenizer, 0.1)
    rng = random.Random(1)
    texts = corpus[:400]
    sampled = [bpe.encode(text, rng) for text in texts]
    plain = tokenizer(texts).input_ids
    for text, ids in zip(texts, sampled, strict=True):
        assert ids[-1] == tokenizer.eos_token_id and tokenizer.eos_token_id not in ids[:-1]
        assert tokenizer.decode(ids, skip_special_tokens=True) == text
    changed = sum(a != b for a, b in zip(sampled, plain, strict=True))
    assert changed > len(texts) / 2
    ratio = sum(map(len, sampled)) / sum(map(len, plain))
    assert 1.03 < ratio < 1.5


def toy_tokenizer() -> PreTrainedTokenizerFast:
    """A BPE over the symbols a, b, c with the merges a+b (first) and ab+c; no pre-tokenizer."""
    vocab = {"<unk>": 0, "a": 1, "b": 2, "c": 3, "ab": 4, "abc": 5}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[("a", "b"), ("ab", "c")], unk_token="<unk>"))
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")


@pytest.mark.parametrize("p", [0.1, 0.4])
def test_segmentations_have_the_probabilities_of_algorithm_1(p) -> None:
    """ "abc": step 1 has one candidate, a+b; dropped (p), nothing is merged. Else step 2 has one candidate,
    ab+c; dropped (p), "ab c". So P(a b c) = p, P(ab c) = (1-p) p, P(abc) = (1-p)^2."""
    tokenizer = toy_tokenizer()
    bpe = BpeDropout(tokenizer, p)
    rng = random.Random(2)
    n = 20000
    counts = Counter(tuple(tokenizer.convert_ids_to_tokens(bpe.encode("abc", rng))) for _ in range(n))
    expected = {("a", "b", "c"): p, ("ab", "c"): (1 - p) * p, ("abc",): (1 - p) ** 2}
    assert set(counts) == set(expected)
    for segmentation, probability in expected.items():
        sigma = math.sqrt(n * probability * (1 - probability))
        assert abs(counts[segmentation] - n * probability) < 5 * sigma, (segmentation, counts)


def test_rejects_what_it_cannot_sample_from() -> None:
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        BpeDropout(toy_tokenizer(), 1.0)
    word_level = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel({"<unk>": 0, "a": 1}, unk_token="<unk>")), unk_token="<unk>"
    )
    with pytest.raises(ValueError, match="needs a BPE tokenizer, got a WordLevel"):
        BpeDropout(word_level, 0.1)
    with pytest.raises(ValueError, match="bpe_dropout must be in"):
        TrainConfig.from_dict({"bpe_dropout": -0.1})


def tokenized(tokenizer, texts: list[str]) -> Dataset:
    raw = DatasetDict({"train": Dataset.from_dict({"src": texts, "tgt": texts[::-1]})})
    return tokenize_dataset(raw, tokenizer)["train"]


def test_rows_are_a_function_of_seed_epoch_and_row(tokenizer, corpus) -> None:
    data = tokenized(tokenizer, corpus[:100])
    bpe = BpeDropout(tokenizer, 0.1)

    def rows(seed: int, epoch: int) -> list[tuple]:
        dataset = EpochSegmentedDataset(data, data["src"], data["tgt"], bpe, seed)
        dataset.set_epoch(epoch)
        return [(tuple(row["input_ids"]), tuple(row["labels"])) for row in (dataset[i] for i in range(len(data)))]

    first = rows(seed=1, epoch=0)
    assert rows(seed=1, epoch=0) == first
    assert sum(a != b for a, b in zip(first, rows(seed=1, epoch=1), strict=True)) > 50
    assert sum(a != b for a, b in zip(first, rows(seed=2, epoch=0), strict=True)) > 50
    dataset = EpochSegmentedDataset(data, data["src"], data["tgt"], bpe, seed=1)
    row = dataset[3]
    assert len(row["attention_mask"]) == len(row["input_ids"]) and set(row["attention_mask"]) == {1}
    assert tokenizer.decode(row["labels"], skip_special_tokens=True) == data["tgt"][3]


def test_a_sample_over_the_length_limit_keeps_the_plain_segmentation(tokenizer, corpus) -> None:
    data = tokenized(tokenizer, corpus[:50])
    limit = max(len(ids) for ids in data["input_ids"])  # every plain segmentation fits
    bpe = BpeDropout(tokenizer, 0.9, max_source_length=limit, max_target_length=limit)
    dataset = EpochSegmentedDataset(data, data["src"], data["tgt"], bpe, seed=0)
    rows = [dataset[i] for i in range(len(data))]
    assert all(len(row["input_ids"]) <= limit and len(row["labels"]) <= limit for row in rows)
    kept = [row["input_ids"] == plain for row, plain in zip(rows, data["input_ids"], strict=True)]
    assert any(kept) and not all(kept)  # long sources fell back, short ones were sampled


def test_a_run_samples_within_its_length_limits(tokenizer) -> None:
    assert bpe_dropout(TrainConfig(), tokenizer) is None
    sampler = bpe_dropout(TrainConfig(bpe_dropout=0.1, max_source_length=60, max_target_length=70), tokenizer)
    assert (sampler.dropout, sampler.max_source_length, sampler.max_target_length) == (0.1, 60, 70)


def test_the_model_card_states_it() -> None:
    from train.model_card import hyperparameters

    assert "BPE-dropout" not in hyperparameters(TrainConfig())
    assert hyperparameters(TrainConfig(bpe_dropout=0.1))["BPE-dropout"].startswith("0.1 on training pairs, both sides")
