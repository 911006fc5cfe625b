"""explain.word2vec: the torch skip-gram against its formula and a planted structure, gensim on the same
structure, and the vectors file (`train.word_vectors`) aligned to a tokenizer's ids."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from explain.word2vec import (
    SkipGramNegativeSampling,
    main,
    make_word_vectors,
    skipgram_pairs,
    train_skipgram,
)
from tests._tiny_tokenizer import SAMPLE_LINES, tiny_tokenizer
from tests.train_helpers import (
    one_thread,  # noqa: F401  (autouse fixture: one torch thread)
    write_slice,
)
from train.word_vectors import WordVectors, WordVectorsError, tokenise, tokenizer_vocab_hash, train_gensim

GROUPS, GROUP_SIZE, FIRST_ID = 4, 6, 4
VOCAB = FIRST_ID + GROUPS * GROUP_SIZE
# Interleaved ids (group g holds 4+g, 8+g, ...), so a row that is not its id's would land in another group.
PLANTED = [list(range(FIRST_ID + g, VOCAB, GROUPS)) for g in range(GROUPS)]


def planted_corpus(sentences: int = 400, length: int = 8, seed: int = 0) -> list[list[int]]:
    """Sentences each drawn from one group only: tokens co-occur with their own group and no other."""
    rng = np.random.default_rng(seed)
    return [rng.choice(PLANTED[i % GROUPS], length).tolist() for i in range(sentences)]


def recovered_tokens(vectors: np.ndarray) -> int:
    """How many tokens have exactly their group's other members as their GROUP_SIZE - 1 nearest neighbours."""
    unit = vectors[FIRST_ID:] / np.linalg.norm(vectors[FIRST_ID:], axis=1, keepdims=True)
    recovered = 0
    for group in PLANTED:
        for token in group:
            similarity = unit @ unit[token - FIRST_ID]
            similarity[token - FIRST_ID] = -np.inf
            nearest = set((np.argsort(-similarity)[: GROUP_SIZE - 1] + FIRST_ID).tolist())
            recovered += nearest == set(group) - {token}
    return recovered


def test_skipgram_pairs_are_every_pair_within_the_window():
    sentences = [[5, 6, 7, 8], [9, 10], [11]]
    expected = [(s[i], s[j]) for s in sentences for i in range(len(s)) for j in range(len(s)) if 0 < abs(i - j) <= 2]
    pairs = [tuple(p) for p in skipgram_pairs(sentences, window=2).tolist()]
    assert sorted(pairs) == sorted(expected)


def test_negative_sampling_loss_matches_the_formula():
    torch.manual_seed(0)
    model = SkipGramNegativeSampling(10, 4)
    torch.nn.init.normal_(model.output_vectors.weight)
    centre, context, negatives = torch.tensor([1, 2]), torch.tensor([3, 4]), torch.tensor([[5, 6, 7], [8, 9, 5]])
    V, U = model.input_vectors.weight.tolist(), model.output_vectors.weight.tolist()

    def log_sigmoid(x: float) -> float:
        return -math.log1p(math.exp(-x))

    def dot(a, b):
        return sum(x * y for x, y in zip(a, b, strict=True))

    objective = [
        log_sigmoid(dot(U[c], V[w])) + sum(log_sigmoid(-dot(U[n], V[w])) for n in ns)
        for w, c, ns in zip(centre.tolist(), context.tolist(), negatives.tolist(), strict=True)
    ]
    assert model(centre, context, negatives).item() == pytest.approx(-sum(objective) / 2, rel=1e-5)


def test_torch_skipgram_recovers_planted_cooccurrence():
    corpus = planted_corpus()
    untrained = SkipGramNegativeSampling(VOCAB, 16).input_vectors.weight.detach().numpy()
    assert recovered_tokens(untrained) < GROUPS * GROUP_SIZE // 2
    vectors = train_skipgram(corpus, VOCAB, 16, window=2, epochs=5, batch_size=256, seed=0)
    assert vectors.shape == (VOCAB, 16)
    assert recovered_tokens(vectors) == GROUPS * GROUP_SIZE


def test_gensim_recovers_planted_cooccurrence_in_id_order():
    vectors, seen = train_gensim(planted_corpus(), VOCAB, 16, window=2, min_count=1, sample=0, workers=1)
    assert seen.tolist() == [False] * FIRST_ID + [True] * (VOCAB - FIRST_ID)
    assert not vectors[:FIRST_ID].any()
    assert recovered_tokens(vectors) == GROUPS * GROUP_SIZE
    again, _ = train_gensim(planted_corpus(), VOCAB, 16, window=2, min_count=1, sample=0)  # one worker: reproducible
    np.testing.assert_array_equal(again, vectors)


@pytest.mark.parametrize("engine", ["torch", "gensim"])
def test_vectors_file_round_trips_aligned_to_tokenizer_ids(tmp_path, engine):
    tokenizer = tiny_tokenizer()
    texts = SAMPLE_LINES * 5
    vectors = make_word_vectors(tokenizer, texts, 8, engine=engine, min_count=10, epochs=1, workers=1)
    counts = np.bincount(
        [i for text in texts for i in tokenizer(text, add_special_tokens=False)["input_ids"]], minlength=len(tokenizer)
    )
    assert vectors.vectors.shape == (len(tokenizer), 8)
    assert vectors.seen.tolist() == (counts >= 10).tolist()
    assert 0 < vectors.seen.sum() < len(tokenizer)
    assert not vectors.vectors[~vectors.seen].any() and np.abs(vectors.vectors[vectors.seen]).sum(1).all()

    loaded = WordVectors.load(vectors.save(tmp_path / "v.safetensors"))
    np.testing.assert_array_equal(loaded.vectors, vectors.vectors)
    np.testing.assert_array_equal(loaded.seen, vectors.seen)
    assert loaded.tokenizer_hash == tokenizer_vocab_hash(tokenizer)
    assert loaded.metadata["engine"] == engine and loaded.metadata["dim"] == "8"
    loaded.check_tokenizer(tokenizer)
    with pytest.raises(WordVectorsError, match="another tokenizer"):
        loaded.check_tokenizer(tiny_tokenizer(vocab_size=290))


def test_tokenise_leaves_out_special_tokens():
    tokenizer = tiny_tokenizer()
    ids = tokenise(tokenizer, ["Two dogs.", ""])
    assert ids == [tokenizer("Two dogs.")["input_ids"][:-1]]  # the appended </s> dropped, the empty text too
    assert tokenizer.eos_token_id not in ids[0]


def test_vectors_file_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.safetensors"):
        WordVectors.load(tmp_path / "nothing.safetensors")
    from safetensors.numpy import save_file

    save_file({"vectors": np.zeros((3, 2), dtype=np.float32)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(WordVectorsError, match=r"other.safetensors.*lacks \['seen', 'metadata tokenizer_vocab_hash'\]"):
        WordVectors.load(tmp_path / "other.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(WordVectorsError, match="junk.safetensors is not a readable"):
        WordVectors.load(tmp_path / "junk.safetensors")
    with pytest.raises(WordVectorsError, match="one entry per row"):
        WordVectors(np.zeros((3, 2)), np.zeros(4, dtype=bool), "hash")


def test_command_trains_a_tokenizer_as_a_run_would_and_writes_aligned_vectors(tmp_path, capsys):
    import hf_vanilla_transformer as hvt
    from train.model_folder import load_tokenizer

    data = write_slice(tmp_path / "data", sizes=(("train", 200),))
    out = tmp_path / "vectors.safetensors"
    argv = ["--tokenizer", str(tmp_path / "tok"), "--dataset", str(data), "--dim", "8", "--out", str(out)]
    main([*argv, "--vocab-size", "400", "--engine", "torch", "--epochs", "1", "--min-count", "2"])

    tokenizer = load_tokenizer(tmp_path / "tok")
    texts = [line for lang in ("de", "en") for line in (data / f"train.{lang}").read_text().splitlines()]
    assert tokenizer.get_vocab() == hvt.train_tokenizer(texts=texts, vocab_size=400).get_vocab()
    vectors = WordVectors.load(out)
    assert vectors.vectors.shape == (len(tokenizer), 8)
    vectors.check_tokenizer(tokenizer)
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["texts"] == 400 and summary["seen_ids"] == int(vectors.seen.sum())
    assert summary["tokens"] == sum(len(ids) for ids in tokenise(tokenizer, texts))

    main([*argv[:-1], str(tmp_path / "again.safetensors"), "--engine", "torch", "--epochs", "1"])  # reuses the folder
    assert WordVectors.load(tmp_path / "again.safetensors").tokenizer_hash == vectors.tokenizer_hash
    with pytest.raises(SystemExit):
        main([*argv, "--vocab-size", "500", "--engine", "torch"])
    assert "holds a tokenizer of 400 tokens, not --vocab-size 500" in capsys.readouterr().err
