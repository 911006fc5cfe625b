"""Word2Vec (Mikolov et al., 2013) over the BPE-tokenised training text: the word vectors the
Transformer's shared embedding (§3.4) can be compared with, or started from.

    python -m explain.word2vec --tokenizer runs/w2v/tokenizer --dataset multi30k --dim 256 \\
        --out runs/w2v/multi30k-sg256.safetensors

Skip-gram with negative sampling learns two matrices, input vectors V and output vectors U (vocab_size x
dim each), so that a token w and a token c seen within `window` positions of it score high and k random
tokens n score low:

    maximise  log sigma(u_c . v_w)  +  sum_{n ~ P(t)^(3/4)}  log sigma(-u_n . v_w)     (Mikolov et al. 2013b, eq. 4)

There is no hidden layer and no nonlinearity: the score is the bilinear u_c . v_w, the sigmoid belongs to
the loss. What one keeps is V, a lookup table like `nn.Embedding`: tokens that occur in similar contexts
end up with similar rows (the distributional hypothesis). CBOW (`--algorithm cbow`) predicts the token
from the mean of its context's vectors instead. The Transformer learns its embedding the same way, as a
lookup table trained by gradient descent, but through a deep network and a translation loss.

The text is what the Transformer reads: each training sentence, source and target, tokenised with the
run's shared BPE tokenizer (special tokens not added), each sentence a text of its own, so contexts never
cross languages. The vocabulary is shared, so a row belongs to a piece whatever its language; German and
English meet where they share pieces (names, numbers, punctuation). The rows are saved aligned to the
tokenizer's ids (`train.word_vectors`), together with the ids that got a vector (at least `min_count`
occurrences) and the tokenizer's vocabulary hash.

Two engines: `gensim` (the default, the library everyone uses) and `torch`, the ~60 lines of
`SkipGramNegativeSampling` / `train_skipgram` below, which are the explanation. gensim adds what makes
word2vec good and fast on real corpora: optimised multi-threaded C loops, subsampling of frequent tokens
(`sample`), a window whose size is drawn per token (near contexts count more), plain SGD with a linearly
decaying learning rate, `min_count` pruning, CBOW and hierarchical softmax, and streaming corpora that do
not fit in memory. The torch version samples one fixed window and uses Adam.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from train.word_vectors import (
    ALGORITHMS,
    WordVectors,
    tokenise,
    tokenizer_vocab_hash,
    vectors_metadata,
    word2vec_vectors,
)

logger = logging.getLogger(__name__)

ENGINES = ("gensim", "torch")
RECIPE_CONFIG = Path(__file__).resolve().parents[1] / "train" / "configs" / "multi30k_de_en.yaml"
"""The recipe's quick setting: a tokenizer trained here uses its vocab_size unless told otherwise."""


# ---------------------------------------------------------------------------- skip-gram in torch
class SkipGramNegativeSampling(nn.Module):
    """Skip-gram with negative sampling (SGNS): two lookup tables and a dot product, nothing else."""

    def __init__(self, vocab_size: int, dim: int):
        super().__init__()
        self.input_vectors = nn.Embedding(vocab_size, dim)  # V: the word vectors one keeps
        self.output_vectors = nn.Embedding(vocab_size, dim)  # U: the context ("output") vectors
        nn.init.uniform_(self.input_vectors.weight, -0.5 / dim, 0.5 / dim)  # as word2vec.c
        nn.init.zeros_(self.output_vectors.weight)

    def forward(self, centre: torch.Tensor, context: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        """centre (B,), context (B,), negatives (B, k) token ids -> the mean negated objective, a scalar."""
        v = self.input_vectors(centre)  # (B, d)
        positive = (self.output_vectors(context) * v).sum(-1)  # (B,)   u_c . v_w
        negative = torch.einsum("bkd,bd->bk", self.output_vectors(negatives), v)  # (B, k)   u_n . v_w
        return -(F.logsigmoid(positive) + F.logsigmoid(-negative).sum(-1)).mean()


def skipgram_pairs(sentences: Sequence[Sequence[int]], window: int) -> torch.Tensor:
    """Every (centre, context) pair at distance 1..window within a sentence -> (P, 2) token ids."""
    ids = torch.cat([torch.as_tensor(s, dtype=torch.long) for s in sentences])
    lengths = torch.tensor([len(s) for s in sentences])
    sentence = torch.repeat_interleave(torch.arange(len(sentences)), lengths)
    pairs = []
    for offset in range(1, window + 1):
        same = sentence[:-offset] == sentence[offset:]  # pairs that do not cross a sentence boundary
        left, right = ids[:-offset][same], ids[offset:][same]
        pairs += [torch.stack([left, right], 1), torch.stack([right, left], 1)]
    return torch.cat(pairs)


def train_skipgram(
    sentences: Sequence[Sequence[int]],
    vocab_size: int,
    dim: int = 100,
    *,
    window: int = 5,
    negative: int = 5,
    epochs: int = 5,
    batch_size: int = 1024,
    lr: float = 0.01,
    seed: int = 0,
) -> np.ndarray:
    """Train `SkipGramNegativeSampling` with Adam; returns V, (vocab_size, dim) float32 (unseen rows: init)."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    pairs = skipgram_pairs(sentences, window)
    counts = torch.bincount(torch.cat([torch.as_tensor(s, dtype=torch.long) for s in sentences]), minlength=vocab_size)
    noise = counts.double() ** 0.75  # the unigram distribution to the 3/4 (Mikolov et al. 2013b, §2.2)
    model = SkipGramNegativeSampling(vocab_size, dim)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for epoch in range(epochs):
        total = 0.0
        for batch in pairs[torch.randperm(len(pairs), generator=generator)].split(batch_size):
            negatives = torch.multinomial(noise, len(batch) * negative, replacement=True, generator=generator)
            loss = model(batch[:, 0], batch[:, 1], negatives.view(len(batch), negative))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        logger.info("skip-gram epoch %d: loss %.4f over %d pairs", epoch + 1, total / len(pairs), len(pairs))
    return model.input_vectors.weight.detach().numpy().copy()


def load_or_train_tokenizer(folder: str | Path, texts: Sequence[str], vocab_size: int):
    """The tokenizer saved in `folder`, or a shared BPE trained on `texts` as a training run trains it
    (`train.train.build_tokenizer`: source and target training text together, §5.1) and saved there."""
    import hf_vanilla_transformer as hvt
    from train.model_folder import load_tokenizer

    folder = Path(folder)
    if (folder / "tokenizer.json").is_file():
        return load_tokenizer(folder)
    logger.info("training a shared BPE vocabulary of %d on %d texts into %s", vocab_size, len(texts), folder)
    tokenizer = hvt.train_tokenizer(texts=list(texts), vocab_size=vocab_size)
    tokenizer.save_pretrained(folder)
    return tokenizer


def make_word_vectors(
    tokenizer,
    texts: Sequence[str],
    dim: int,
    *,
    engine: str = "gensim",
    algorithm: str = "skipgram",
    window: int = 5,
    negative: int = 5,
    min_count: int = 5,
    epochs: int = 5,
    seed: int = 1,
    workers: int = 1,
    metadata: dict[str, str] | None = None,
) -> WordVectors:
    """Word2Vec vectors of `texts` tokenised with `tokenizer`, aligned to its ids."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "torch" and algorithm != "skipgram":
        raise ValueError(f"the torch engine trains skip-gram only, got algorithm {algorithm!r}")
    if engine == "gensim":
        return word2vec_vectors(
            tokenizer,
            texts,
            dim,
            algorithm=algorithm,
            window=window,
            negative=negative,
            min_count=min_count,
            epochs=epochs,
            seed=seed,
            workers=workers,
            metadata=metadata,
        )
    sentences = tokenise(tokenizer, texts)
    vocab_size = len(tokenizer)
    vectors = train_skipgram(sentences, vocab_size, dim, window=window, negative=negative, epochs=epochs, seed=seed)
    counts = np.bincount(np.concatenate([np.asarray(s) for s in sentences]), minlength=vocab_size)
    seen = counts >= min_count
    vectors[~seen] = 0.0
    settings = dict(engine=engine, algorithm=algorithm, dim=dim, window=window, negative=negative)
    described = vectors_metadata(sentences, seen, **settings, min_count=min_count, epochs=epochs, seed=seed)
    return WordVectors(
        vectors=vectors,
        seen=seen,
        tokenizer_hash=tokenizer_vocab_hash(tokenizer),
        metadata={**described, **(metadata or {})},
    )


def main(argv: Sequence[str] | None = None) -> WordVectors:
    from train.config import TrainConfig
    from train.data import add_data_arguments, load_split_from_arguments
    from train.precision import machine_description

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", required=True, help="tokenizer folder; trained there (as a run would) if empty")
    add_data_arguments(parser, split="train")
    parser.add_argument(
        "--vocab-size",
        type=int,
        default=None,
        help="vocabulary of a tokenizer trained here (default: the recipe's, train/configs/multi30k_de_en.yaml)",
    )
    parser.add_argument("--dim", type=int, required=True, help="vector size (the model's d_model, to initialise it)")
    parser.add_argument("--out", required=True, help="the .safetensors file to write (a .json summary beside it)")
    parser.add_argument("--engine", choices=ENGINES, default="gensim")
    parser.add_argument("--algorithm", choices=ALGORITHMS, default="skipgram")
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--negative", type=int, default=5)
    parser.add_argument("--min-count", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1, help="gensim threads (more: faster, not reproducible)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("gensim").setLevel(logging.WARNING)  # its progress lines every second
    if args.dim < 1:
        parser.error(f"--dim must be >= 1, got {args.dim}")

    start = time.perf_counter()
    data = load_split_from_arguments(args)
    texts = list(data["src"]) + list(data["tgt"])
    vocab_size = args.vocab_size or TrainConfig.load(RECIPE_CONFIG).vocab_size
    tokenizer = load_or_train_tokenizer(args.tokenizer, texts, vocab_size)
    if args.vocab_size and len(tokenizer) != args.vocab_size:
        parser.error(
            f"{args.tokenizer} holds a tokenizer of {len(tokenizer)} tokens, not --vocab-size {args.vocab_size}; "
            "give another folder to train a new one"
        )
    corpus = f"{args.dataset} {args.split} {args.src_lang}+{args.tgt_lang}"
    logger.info("training %s vectors of dimension %d on %s with %s", args.algorithm, args.dim, corpus, args.engine)
    vectors = make_word_vectors(
        tokenizer,
        texts,
        args.dim,
        engine=args.engine,
        algorithm=args.algorithm,
        window=args.window,
        negative=args.negative,
        min_count=args.min_count,
        epochs=args.epochs,
        seed=args.seed,
        workers=args.workers,
        metadata={"corpus": corpus, "tokenizer": str(args.tokenizer)},
    )
    out = vectors.save(args.out)
    summary = {
        **vectors.settings,
        "vocab_size": vectors.vocab_size,
        "tokenizer_vocab_hash": vectors.tokenizer_hash,
        "minutes": (time.perf_counter() - start) / 60,
        "cpu_minutes": time.process_time() / 60,  # all threads of this process, from its start
        "machine": machine_description(),
    }
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(
        f"saved {vectors.vocab_size} x {vectors.dim} vectors ({summary['seen_ids']} ids seen >= {args.min_count} "
        f"times in {summary['tokens']} tokens) to {out} in {summary['minutes']:.1f} minutes"
    )
    return vectors


if __name__ == "__main__":
    main()
