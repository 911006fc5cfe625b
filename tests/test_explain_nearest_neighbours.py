"""explain.nearest_neighbours: cosine neighbours against a brute-force computation, words split into
several BPE pieces, and the command on a saved model with a vectors file."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from explain.nearest_neighbours import cosine_neighbours, main, neighbours, ordinary_tokens, piece_ids, show_piece
from tests._tiny_tokenizer import tiny_tokenizer
from tests.helpers import tiny_model
from train.word_vectors import WordVectors, WordVectorsError, tokenizer_vocab_hash


def brute_force(matrix: list[list[float]], query: list[float], candidates: list[bool], k: int):
    """Cosine of the query with every candidate row, one at a time, sorted."""

    def cosine(a, b):
        return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))

    scored = [(cosine(row, query), i) for i, row in enumerate(matrix) if candidates[i]]
    return [(i, s) for s, i in sorted(scored, reverse=True)[:k]]


def test_cosine_neighbours_equal_brute_force():
    generator = torch.Generator().manual_seed(0)
    matrix = torch.randn(60, 8, generator=generator) * torch.rand(60, 1, generator=generator) * 5  # unequal norms
    query = torch.randn(8, generator=generator)
    candidates = torch.rand(60, generator=generator) < 0.7
    found = cosine_neighbours(matrix, query, candidates, k=6)
    expected = brute_force(matrix.tolist(), query.tolist(), candidates.tolist(), 6)
    assert [i for i, _ in found] == [i for i, _ in expected]
    assert [s for _, s in found] == pytest.approx([s for _, s in expected], abs=1e-12)
    assert len(cosine_neighbours(matrix, query, candidates, k=100)) == int(candidates.sum())


def test_word_of_several_pieces_is_the_mean_of_their_unit_vectors():
    tokenizer = tiny_tokenizer()
    word = "Spielhaus"
    ids = piece_ids(tokenizer, word)
    assert len(ids) > 1 and tokenizer.decode(ids) == " " + word
    matrix = torch.randn(len(tokenizer), 16, generator=torch.Generator().manual_seed(1))
    candidates = ordinary_tokens(tokenizer, len(tokenizer))
    [result] = neighbours(matrix, tokenizer, [word], candidates, k=5)
    assert result.ids == ids and "".join(result.pieces) == "▁" + word

    rows = matrix.tolist()
    units = [[x / math.sqrt(sum(y * y for y in rows[i])) for x in rows[i]] for i in ids]
    mean = [sum(column) / len(ids) for column in zip(*units, strict=True)]
    allowed = [bool(c) and i not in ids and i not in tokenizer.all_special_ids for i, c in enumerate(candidates)]
    expected = brute_force(rows, mean, allowed, 5)
    assert [i for i, _ in result.neighbours] == [i for i, _ in expected]
    assert [s for _, s in result.neighbours] == pytest.approx([s for _, s in expected], abs=1e-12)


def test_pieces_are_shown_with_a_word_start_mark():
    tokenizer = tiny_tokenizer()
    [start] = piece_ids(tokenizer, "ĠEin", as_token=True)  # GPT-2's byte alphabet: Ġ is a space
    assert show_piece(tokenizer, start) == "▁Ein"
    assert [show_piece(tokenizer, i) for i in piece_ids(tokenizer, "Mädchen")] == ["▁M", "ä", "d", "ch", "en"]
    with pytest.raises(ValueError, match="'Ġnothere' is not in the tokenizer's vocabulary"):
        piece_ids(tokenizer, "Ġnothere", as_token=True)


def test_command_shows_both_spaces_side_by_side(tmp_path, capsys):
    tokenizer = tiny_tokenizer()
    model = tiny_model(vocab_size=len(tokenizer))
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    rng = np.random.default_rng(0)
    seen = rng.random(len(tokenizer)) < 0.8
    matrix = rng.standard_normal((len(tokenizer), 32)) * seen[:, None]
    vectors = WordVectors(matrix, seen, tokenizer_vocab_hash(tokenizer))
    vectors.save(tmp_path / "v.safetensors")
    argv = ["dogs", "Spielhaus", "--vectors", str(tmp_path / "v.safetensors"), "--model", str(tmp_path / "model")]
    columns = main([*argv, "-k", "3", "--json", str(tmp_path / "nn.json")])

    assert set(columns) == {"word2vec", "transformer"}
    allowed = ordinary_tokens(tokenizer, len(tokenizer)) & torch.from_numpy(seen)
    for name, matrix in (("word2vec", torch.from_numpy(vectors.vectors)), ("transformer", model.model.shared.weight)):
        for result in columns[name]:
            mask = allowed.clone()
            mask[result.ids] = False
            query = torch.nn.functional.normalize(matrix[result.ids].double(), dim=-1).mean(0)
            assert [i for i, _ in result.neighbours] == [
                i for i, _ in brute_force(matrix.tolist(), query.tolist(), mask.tolist(), 3)
            ]
            assert all(seen[i] for i, _ in result.neighbours)  # both columns choose among the word2vec ids
    printed = capsys.readouterr().out
    assert "Spielhaus  (mean of pieces" in printed and "word2vec" in printed and "transformer" in printed
    record = json.loads((tmp_path / "nn.json").read_text())
    assert [t for t, _ in record["queries"]["dogs"]["transformer"]] == [
        show_piece(tokenizer, i) for i, _ in columns["transformer"][0].neighbours
    ]

    other = tiny_tokenizer(["Ganz andere Sätze.", "Other sentences."], vocab_size=len(tokenizer))
    WordVectors(vectors.vectors, seen, tokenizer_vocab_hash(other)).save(tmp_path / "other.safetensors")
    with pytest.raises(WordVectorsError, match="another tokenizer"):
        main(["dogs", "--vectors", str(tmp_path / "other.safetensors"), "--model", str(tmp_path / "model")])
