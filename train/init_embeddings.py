"""Start a Transformer's shared embedding from word vectors (`init_embeddings:` in a training config).

`init_embeddings: word2vec` trains them as the run starts: skip-gram vectors (gensim, d_model wide,
window 5, 5 negatives, min_count 5, 5 epochs, the run's seed) of the training split's source and target
text, tokenised with the run's tokenizer, saved as `<output_dir>/word_vectors.safetensors` (a resumed
run reuses the file). Otherwise the vectors come from a file of `python -m explain.word2vec --tokenizer
DIR`, which must be made with the run's tokenizer: row i is token id i (`train.word_vectors`), and the
file's vocabulary hash must equal the tokenizer's. Their scale is the Transformer's, not word2vec's: the
model multiplies embeddings by sqrt(d_model) (§3.4) and initialises them from N(0, d_model^-0.5)
(`_init_weights`), so that the scaled embeddings, which are added to the sinusoidal positions of
amplitude 1 (§3.5), have unit variance. The vectors are therefore multiplied by one number, d_model^-0.5
/ RMS(seen rows), which gives them that standard deviation (the random init's mean is 0, so its std is
its root mean square) and leaves their directions, hence every cosine similarity, unchanged.

The ablation "word2vec init vs random init" at the recipe's budget, the same tokenizer and seed:

    python -m explain.word2vec --tokenizer runs/w2v/tokenizer --dataset multi30k --dim 256 \
        --out runs/w2v/multi30k-sg256.safetensors          # trains the recipe's tokenizer there first
    python -m train.recipe tokenizer=runs/w2v/tokenizer output_dir=runs/init-random
    python -m train.recipe tokenizer=runs/w2v/tokenizer output_dir=runs/init-word2vec \
        init_embeddings=runs/w2v/multi30k-sg256.safetensors

Copying consumes no random numbers, so both runs start from the same weights except these rows.

Rows of ids without a vector (special tokens, pieces rarer than word2vec's `min_count`) keep their random
initialisation, and the padding row stays zero. The matrix is shared by the encoder, the decoder and the
pre-softmax layer (§3.4), so one copy sets all three; an untied or unshared model gets the vectors in each
of its matrices.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

from train.word_vectors import WordVectors, WordVectorsError, word2vec_vectors

logger = logging.getLogger(__name__)


def rescale(rows: np.ndarray, d_model: int) -> tuple[np.ndarray, float]:
    """(n, dim) vectors -> (the vectors times c, c), with c = d_model^-0.5 / RMS(rows): the std of the
    Transformer's random embedding init (whose mean is 0, so std = RMS)."""
    rms = float(np.sqrt(np.mean(rows.astype(np.float64) ** 2))) if rows.size else 0.0
    if rms == 0.0:
        raise WordVectorsError("the word vectors hold no nonzero row: nothing to initialise the embedding with")
    scale = d_model**-0.5 / rms
    return (rows * scale).astype(np.float32), scale


@torch.no_grad()
def init_embeddings(model, vectors: WordVectors, tokenizer, source: str = "word vectors") -> dict[str, int | float]:
    """Copy `vectors` (rescaled, see the module docstring) into `model`'s token embeddings in place.

    Raises `WordVectorsError` naming the problem when the vectors were made with another tokenizer, or have
    another vocabulary size or dimension than the model. Returns what was done: rows copied and the scale."""
    config = model.config
    if vectors.vocab_size != config.vocab_size:
        raise WordVectorsError(
            f"{source} have {vectors.vocab_size} rows but the model's vocabulary has {config.vocab_size} tokens "
            f"(vocab_size); make them with the run's tokenizer"
        )
    if vectors.dim != config.d_model:
        raise WordVectorsError(
            f"{source} have dimension {vectors.dim} but the model's d_model is {config.d_model}; "
            f"make them with --dim {config.d_model}"
        )
    vectors.check_tokenizer(tokenizer, source)
    rows = np.flatnonzero(vectors.seen)
    rows = rows[rows != config.pad_token_id]  # the padding row stays zero (nn.Embedding's padding_idx)
    values, scale = rescale(vectors.vectors[rows], config.d_model)
    matrices = {id(m.weight): m.weight for m in (model.get_input_embeddings(), model.get_decoder().embed_tokens)}
    if not getattr(config, "tie_word_embeddings", False):
        matrices[id(model.get_output_embeddings().weight)] = model.get_output_embeddings().weight
    for weight in matrices.values():
        weight[torch.as_tensor(rows)] = torch.as_tensor(values, dtype=weight.dtype, device=weight.device)
    logger.info(
        "initialised %d of %d embedding rows from %s (scaled by %.4g to std d_model^-0.5 = %.4g) in %s",
        len(rows),
        config.vocab_size,
        source,
        scale,
        config.d_model**-0.5,
        "the one shared matrix" if len(matrices) == 1 else f"{len(matrices)} matrices",
    )
    return {"rows": len(rows), "scale": scale, "matrices": len(matrices)}


WORD2VEC = "word2vec"
"""The `init_embeddings` value that trains the run's own skip-gram vectors (`word2vec_for_run`)."""
RUN_WORD_VECTORS = "word_vectors.safetensors"
"""Where in the run folder `init_embeddings: word2vec` keeps its vectors."""


def vectors_file(init_embeddings: str | None, output_dir: str | Path) -> Path | None:
    """The vectors file a new model's embedding starts from: `init_embeddings` itself, or the run's own file
    for `word2vec`; None for the random init."""
    if not init_embeddings:
        return None
    return Path(output_dir) / RUN_WORD_VECTORS if init_embeddings == WORD2VEC else Path(init_embeddings)


def word2vec_for_run(output_dir: str | Path, tokenizer, texts, dim: int, seed: int, corpus: str) -> Path:
    """`<output_dir>/word_vectors.safetensors`: skip-gram vectors of `texts` (kept if the file exists: a resumed
    run), written whole or not at all (`WordVectors.save`)."""
    path = Path(output_dir) / RUN_WORD_VECTORS
    if path.is_file():
        return path
    logger.info("training %d-dimensional skip-gram vectors of %d texts (%s) for the embedding", dim, len(texts), corpus)
    logging.getLogger("gensim").setLevel(logging.WARNING)  # not its progress lines every second
    start = time.perf_counter()
    vectors = word2vec_vectors(tokenizer, texts, dim, seed=seed, metadata={"corpus": corpus})
    vectors.metadata["minutes"] = f"{(time.perf_counter() - start) / 60:.3f}"  # the run's time before training
    return vectors.save(path)


def word2vec_minutes(output_dir: str | Path) -> float:
    """Minutes a run spent training its own word vectors before training the model (0 if it trained none)."""
    path = Path(output_dir) / RUN_WORD_VECTORS
    return float(WordVectors.load_metadata(path).get("minutes", 0.0)) if path.is_file() else 0.0


def init_embeddings_from_file(model, path: str | Path, tokenizer) -> dict[str, int | float]:
    """`init_embeddings` with the vectors of `path` (a file written by `python -m explain.word2vec`)."""
    return init_embeddings(model, WordVectors.load(path), tokenizer, source=str(path))
