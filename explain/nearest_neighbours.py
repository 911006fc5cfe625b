"""Cosine nearest neighbours of a word in two token spaces, side by side: Word2Vec vectors
(`python -m explain.word2vec`) and a trained Transformer's shared embedding (§3.4).

    python -m explain.nearest_neighbours --vectors runs/w2v/multi30k-sg256.safetensors \\
        --model runs/multi30k-de-en/model dog Hund playing blue -k 8

Both are tables with one row per token id, so a neighbour is the row with the largest cosine
similarity cos(a, b) = a . b / (|a| |b|) to the query's. The Transformer's row is the one the encoder
and decoder read (times sqrt(d_model), which does not change a cosine) and the pre-softmax layer
scores outputs with.

Words are looked up as they occur inside a sentence, after a space (the tokenizer prepends one to
every text). A word that the BPE vocabulary splits into several pieces has no row of its own: its
query is the mean of its pieces' unit vectors (each piece counts once, whatever its norm), and the
table says which pieces it was made of. The pieces themselves are left out of the neighbours.
`--tokens` looks up vocabulary entries as written instead (`Ġdog`: GPT-2's byte alphabet, `Ġ` is a
space). Candidates are the ordinary tokens (no special ones); with a vectors file, only the ids that
got a word2vec vector, in both spaces, so the two columns choose among the same tokens. In the table,
`▁` marks a piece that starts a word.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tokenizers import decoders

from train.word_vectors import WordVectors, WordVectorsError


@dataclass
class Neighbours:
    query: str
    pieces: list[str]
    """The vocabulary pieces the query is made of (one for a word in the vocabulary)."""
    ids: list[int]
    """Their token ids."""
    neighbours: list[tuple[int, float]]
    """(token id, cosine similarity), most similar first."""


def cosine_neighbours(
    matrix: torch.Tensor, query: torch.Tensor, candidates: torch.Tensor, k: int
) -> list[tuple[int, float]]:
    """The k rows of `matrix` (V, d) among `candidates` (V,) bool with the largest cosine to `query` (d,)."""
    similarity = F.normalize(matrix.double(), dim=-1) @ F.normalize(query.double(), dim=0)  # (V,)
    similarity = similarity.masked_fill(~candidates, float("-inf"))
    top = similarity.topk(min(k, int(candidates.sum())))
    return [(int(i), float(s)) for s, i in zip(top.values, top.indices, strict=True)]


def query_vector(matrix: torch.Tensor, ids: Sequence[int]) -> torch.Tensor:
    """The mean of the unit vectors of rows `ids` of `matrix` (V, d) -> (d,)."""
    return F.normalize(matrix[list(ids)].double(), dim=-1).mean(0)


def piece_ids(tokenizer, text: str, as_token: bool = False) -> list[int]:
    """Token ids of `text` as a word inside a sentence, or of the vocabulary entry `text` (`as_token`)."""
    if as_token:
        token_id = tokenizer.get_vocab().get(text)
        if token_id is None:
            raise ValueError(f"{text!r} is not in the tokenizer's vocabulary")
        return [token_id]
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError(f"{text!r} has no tokens")
    return ids


def show_piece(tokenizer, token_id: int) -> str:
    """A vocabulary piece as text, `▁` marking a leading space (a piece that starts a word)."""
    text = decoders.ByteLevel().decode([tokenizer.convert_ids_to_tokens(token_id)])
    return "▁" + text[1:] if text.startswith(" ") else text


def neighbours(
    matrix: torch.Tensor, tokenizer, queries: Sequence[str], candidates: torch.Tensor, k: int, as_tokens: bool = False
) -> list[Neighbours]:
    """Nearest neighbours in `matrix` (V, d) of each query (see the module docstring)."""
    results = []
    for query in queries:
        ids = piece_ids(tokenizer, query, as_tokens)
        allowed = candidates.clone()
        allowed[ids] = False
        found = cosine_neighbours(matrix, query_vector(matrix, ids), allowed, k)
        pieces = [show_piece(tokenizer, i) for i in ids]
        results.append(Neighbours(query, pieces, ids, found))
    return results


def ordinary_tokens(tokenizer, vocab_size: int) -> torch.Tensor:
    """(vocab_size,) bool: True except for the special tokens."""
    mask = torch.ones(vocab_size, dtype=torch.bool)
    mask[[i for i in tokenizer.all_special_ids if i < vocab_size]] = False
    return mask


def format_table(tokenizer, columns: dict[str, list[Neighbours]]) -> str:
    """Side-by-side text tables, one per query."""
    names = list(columns)
    lines = []
    for index, first in enumerate(columns[names[0]]):
        made_of = "" if len(first.ids) == 1 else f"  (mean of pieces {' + '.join(first.pieces)})"
        lines.append(f"{first.query}{made_of}")
        lines.append("  " + "".join(f"{name:<28}" for name in names))
        rows = max(len(columns[name][index].neighbours) for name in names)
        for rank in range(rows):
            cells = []
            for name in names:
                found = columns[name][index].neighbours
                cells.append(
                    f"{show_piece(tokenizer, found[rank][0]):<20}{found[rank][1]:>6.3f}  " if rank < len(found) else ""
                )
            lines.append("  " + "".join(f"{cell:<28}" for cell in cells))
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, list[Neighbours]]:
    from train.model_folder import load_model, load_tokenizer

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("words", nargs="+", help="words (or vocabulary tokens with --tokens) to look up")
    parser.add_argument("--vectors", help="a word vectors file of explain.word2vec")
    parser.add_argument("--model", help="a trained model folder: its shared embedding")
    parser.add_argument("--tokenizer", help="tokenizer folder (default: the model's, else the vectors')")
    parser.add_argument("-k", type=int, default=8, help="neighbours per word")
    parser.add_argument("--tokens", action="store_true", help="look up vocabulary entries as written (Ġdog)")
    parser.add_argument("--json", help="also write the neighbours to this JSON file")
    args = parser.parse_args(argv)
    if not args.vectors and not args.model:
        parser.error("give --vectors, --model or both")
    vectors = WordVectors.load(args.vectors) if args.vectors else None
    tokenizer_dir = args.tokenizer or args.model or (vectors.metadata.get("tokenizer") if vectors else None)
    if tokenizer_dir is None:
        parser.error("--tokenizer is needed: the vectors file does not name its tokenizer")
    tokenizer = load_tokenizer(tokenizer_dir)
    spaces: dict[str, torch.Tensor] = {}
    if vectors is not None:
        vectors.check_tokenizer(tokenizer, args.vectors)
        spaces["word2vec"] = torch.from_numpy(vectors.vectors)
    if args.model:
        model, _ = load_model(args.model)
        spaces["transformer"] = model.get_input_embeddings().weight.detach()
    sizes = {name: matrix.shape[0] for name, matrix in spaces.items()}
    if len(set(sizes.values())) > 1:
        raise WordVectorsError(f"the two spaces have vocabularies of different sizes ({sizes}): not one tokenizer")
    vocab_size = next(iter(sizes.values()))
    candidates = ordinary_tokens(tokenizer, vocab_size)
    if vectors is not None:
        candidates &= torch.from_numpy(vectors.seen)
    columns = {
        name: neighbours(m, tokenizer, args.words, candidates, args.k, args.tokens) for name, m in spaces.items()
    }
    print(format_table(tokenizer, columns))
    if args.json:
        record = {
            "vectors": args.vectors,
            "vectors_settings": vectors.settings if vectors else None,
            "model": args.model,
            "k": args.k,
            "queries": {
                word: {
                    "pieces": columns[next(iter(columns))][i].pieces,
                    **{
                        name: [[show_piece(tokenizer, t), round(s, 4)] for t, s in found[i].neighbours]
                        for name, found in columns.items()
                    },
                }
                for i, word in enumerate(args.words)
            },
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return columns


if __name__ == "__main__":
    main()
