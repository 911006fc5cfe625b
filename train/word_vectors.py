"""Token vectors aligned to a tokenizer's ids, in one `.safetensors` file.

A file written by `python -m explain.word2vec` holds

| tensor    | shape             | meaning                                                            |
|-----------|-------------------|--------------------------------------------------------------------|
| `vectors` | (vocab_size, dim) | row i is the vector of token id i; rows of unseen ids are zero      |
| `seen`    | (vocab_size,)     | bool: id i occurred often enough in the training text to get a vector |

and, as string metadata, `tokenizer_vocab_hash` (`tokenizer_vocab_hash`: which tokenizer the rows belong
to) plus how the vectors were trained. Rows are indexed by token id, so the file can be copied straight
into a Transformer's embedding matrix built with the same tokenizer (`train.init_embeddings`); the
hash is how that copy refuses vectors made with another tokenizer.

`word2vec_vectors` trains such vectors with gensim's Word2Vec on token ids (what training's
`init_embeddings: word2vec` and `python -m explain.word2vec` use; the latter also has a small torch
skip-gram that explains the algorithm).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

HASH_KEY = "tokenizer_vocab_hash"


class WordVectorsError(ValueError):
    """A vectors file is missing, malformed, or does not belong to the tokenizer or model at hand."""


def tokenizer_vocab_hash(tokenizer) -> str:
    """SHA-256 of the tokenizer's vocabulary (token -> id, special tokens included).

    Two tokenizers with the same hash give every token the same id, which is what aligning vector rows to
    ids needs. (The recipe's BPE training is deterministic: the same text and vocab_size give the same hash.)
    """
    vocab = json.dumps(tokenizer.get_vocab(), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(vocab.encode("utf-8")).hexdigest()


@dataclass
class WordVectors:
    vectors: np.ndarray
    """(vocab_size, dim) float32; row i belongs to token id i."""
    seen: np.ndarray
    """(vocab_size,) bool: the ids that have a trained vector."""
    tokenizer_hash: str
    """`tokenizer_vocab_hash` of the tokenizer whose ids index the rows."""
    metadata: dict[str, str] = field(default_factory=dict)
    """How the vectors were trained (algorithm, dim, window, corpus...), as strings."""

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2:
            raise WordVectorsError(f"vectors must be (vocab_size, dim), got shape {self.vectors.shape}")
        if self.seen.shape != (self.vectors.shape[0],):
            raise WordVectorsError(
                f"seen must have one entry per row of vectors ({self.vectors.shape[0]}), got shape {self.seen.shape}"
            )
        self.vectors = np.ascontiguousarray(self.vectors, dtype=np.float32)
        self.seen = np.ascontiguousarray(self.seen, dtype=bool)

    @property
    def vocab_size(self) -> int:
        return self.vectors.shape[0]

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    @property
    def settings(self) -> dict[str, str | int]:
        """`metadata` with its whole numbers as ints (safetensors metadata holds strings only)."""
        return {key: int(value) if value.isdigit() else value for key, value in self.metadata.items()}

    def check_tokenizer(self, tokenizer, source: str = "word vectors") -> None:
        """Raise `WordVectorsError` unless the rows are indexed by `tokenizer`'s ids."""
        actual = tokenizer_vocab_hash(tokenizer)
        if actual != self.tokenizer_hash:
            raise WordVectorsError(
                f"{source} were made with another tokenizer (vocabulary hash {self.tokenizer_hash[:12]}..., this "
                f"tokenizer's is {actual[:12]}...): their rows are not this tokenizer's ids. Make the vectors with "
                "this tokenizer (`python -m explain.word2vec --tokenizer DIR`) or train with theirs (`tokenizer: DIR`)"
            )

    def save(self, path: str | Path) -> Path:
        """Write the file whole or not at all (through `<path>.partial` and a rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        metadata = {**self.metadata, HASH_KEY: self.tokenizer_hash}
        partial = path.with_name(path.name + ".partial")
        save_file({"vectors": self.vectors, "seen": self.seen}, str(partial), metadata=metadata)
        os.replace(partial, path)
        return path

    @staticmethod
    def load_metadata(path: str | Path) -> dict[str, str]:
        """The file's metadata (how the vectors were trained), without reading the vectors."""
        with safe_open(str(path), framework="np") as handle:
            return dict(handle.metadata() or {})

    @classmethod
    def load(cls, path: str | Path) -> WordVectors:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"word vectors file not found: {path}")
        try:
            with safe_open(str(path), framework="np") as handle:
                names = set(handle.keys())
                missing = sorted({"vectors", "seen"} - names)
                metadata = dict(handle.metadata() or {})
                if missing or HASH_KEY not in metadata:
                    what = missing + ([f"metadata {HASH_KEY}"] if HASH_KEY not in metadata else [])
                    raise WordVectorsError(f"{path} is not a word vectors file of explain.word2vec: it lacks {what}")
                vectors, seen = handle.get_tensor("vectors"), handle.get_tensor("seen")
        except SafetensorError as error:
            raise WordVectorsError(f"{path} is not a readable .safetensors file ({error})") from error
        tokenizer_hash = metadata.pop(HASH_KEY)
        return cls(vectors=vectors, seen=seen, tokenizer_hash=tokenizer_hash, metadata=metadata)


# ---------------------------------------------------------------------------- training them
ALGORITHMS = ("skipgram", "cbow")


def tokenise(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text as the Transformer reads it, without the `</s>` the tokenizer appends."""
    encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [ids for ids in encoded if ids]


def train_gensim(
    sentences: Sequence[Sequence[int]],
    vocab_size: int,
    dim: int = 100,
    *,
    algorithm: str = "skipgram",
    window: int = 5,
    negative: int = 5,
    min_count: int = 5,
    epochs: int = 5,
    sample: float = 1e-3,
    seed: int = 1,
    workers: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """gensim's `Word2Vec` on token ids (as strings) -> (vectors (vocab_size, dim), seen (vocab_size,)).

    With one worker (the default) the same call gives the same vectors; more are faster, not reproducible."""
    try:
        from gensim.models import Word2Vec
    except ImportError as error:
        raise ImportError("word2vec vectors need gensim: pip install 'hf-vanilla-transformer[train]'") from error

    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    model = Word2Vec(
        sentences=[[str(i) for i in s] for s in sentences],
        vector_size=dim,
        sg=int(algorithm == "skipgram"),
        window=window,
        negative=negative,
        min_count=min_count,
        epochs=epochs,
        sample=sample,
        seed=seed,
        workers=workers,
    )
    vectors = np.zeros((vocab_size, dim), dtype=np.float32)
    seen = np.zeros(vocab_size, dtype=bool)
    ids = np.array([int(key) for key in model.wv.index_to_key], dtype=np.int64)
    vectors[ids] = model.wv.vectors
    seen[ids] = True
    return vectors, seen


def vectors_metadata(sentences: Sequence[Sequence[int]], seen: np.ndarray, **settings) -> dict[str, str]:
    """The metadata a vectors file keeps: how they were trained (`settings`), and the corpus size."""
    settings.update(texts=len(sentences), tokens=sum(len(s) for s in sentences), seen_ids=int(seen.sum()))
    return {key: str(value) for key, value in settings.items()}


def word2vec_vectors(
    tokenizer,
    texts: Sequence[str],
    dim: int,
    *,
    algorithm: str = "skipgram",
    window: int = 5,
    negative: int = 5,
    min_count: int = 5,
    epochs: int = 5,
    seed: int = 1,
    workers: int = 1,
    metadata: dict[str, str] | None = None,
) -> WordVectors:
    """Word2Vec (gensim) vectors of `texts` tokenised with `tokenizer`, each text a sentence of its own, aligned to
    its ids; `metadata` (e.g. the corpus) is kept with how they were trained."""
    sentences = tokenise(tokenizer, texts)
    settings = dict(algorithm=algorithm, window=window, negative=negative, min_count=min_count, epochs=epochs)
    vectors, seen = train_gensim(sentences, len(tokenizer), dim, seed=seed, workers=workers, **settings)
    described = vectors_metadata(sentences, seen, engine="gensim", dim=dim, workers=workers, seed=seed, **settings)
    return WordVectors(
        vectors=vectors,
        seen=seen,
        tokenizer_hash=tokenizer_vocab_hash(tokenizer),
        metadata={**described, **(metadata or {})},
    )
