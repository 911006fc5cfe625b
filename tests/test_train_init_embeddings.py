"""train.init_embeddings (`init_embeddings:` of a training config): word vectors, rescaled to the random
init's std, in the model's embedding (one matrix for encoder, decoder and softmax, §3.4), and clear refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests._tiny_tokenizer import tiny_tokenizer
from tests.helpers import tiny_model
from tests.train_helpers import (
    one_thread,  # noqa: F401  (autouse fixture: one torch thread)
    tiny_settings,
    write_slice,
)
from train.config import TrainConfig
from train.init_embeddings import RUN_WORD_VECTORS, init_embeddings, init_embeddings_from_file, word2vec_for_run
from train.word_vectors import WordVectors, WordVectorsError, tokenizer_vocab_hash

D_MODEL = 32  # the tiny preset's


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def word_vectors(tokenizer, dim: int = D_MODEL, rows: int | None = None, seed: int = 0) -> WordVectors:
    """Vectors far from the init's scale (std 7), with a third of the ids unseen and the padding id 'seen'."""
    rng = np.random.default_rng(seed)
    rows = len(tokenizer) if rows is None else rows
    seen = rng.random(rows) < 2 / 3
    seen[tokenizer.pad_token_id] = True
    vectors = np.where(seen[:, None], 7.0 * rng.standard_normal((rows, dim)) + 1.0, 0.0).astype(np.float32)
    return WordVectors(vectors, seen, tokenizer_vocab_hash(tokenizer))


def model_for(tokenizer, **overrides):
    return tiny_model(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, **overrides)


def test_vectors_rescaled_into_the_one_shared_embedding(tokenizer):
    model = model_for(tokenizer)
    before = model.model.shared.weight.detach().clone()
    vectors = word_vectors(tokenizer)
    init_embeddings(model, vectors, tokenizer)

    rows = torch.from_numpy(vectors.seen).clone()
    rows[tokenizer.pad_token_id] = False
    given = torch.from_numpy(vectors.vectors)[rows].double()
    expected = given * D_MODEL**-0.5 / given.pow(2).mean().sqrt()  # one factor: RMS -> the init's std
    weight = model.model.shared.weight.detach()
    torch.testing.assert_close(weight[rows].double(), expected, rtol=1e-6, atol=1e-7)
    assert weight[rows].double().pow(2).mean().sqrt().item() == pytest.approx(D_MODEL**-0.5, rel=1e-5)
    torch.testing.assert_close(weight[~torch.from_numpy(vectors.seen)], before[~torch.from_numpy(vectors.seen)])
    assert not weight[tokenizer.pad_token_id].any()  # padding row stays zero
    # One matrix: the encoder's and decoder's embeddings and the pre-softmax layer (§3.4).
    for tied in (
        model.model.encoder.embed_tokens.weight,
        model.model.decoder.embed_tokens.weight,
        model.lm_head.weight,
    ):
        assert tied.data_ptr() == weight.data_ptr()
    # The copied rows are what the encoder reads (times sqrt(d_model), plus positions, §3.4-3.5).
    token = int(torch.nonzero(rows)[0])
    hidden = model.model.encoder.embed(torch.tensor([[token]]), None, 0, "encoder")
    pe = model.model.encoder.embed_positions(torch.arange(1))
    torch.testing.assert_close(hidden[0, 0], (expected[0] * D_MODEL**0.5 + pe[0].double()).float())


def test_untied_unshared_model_gets_the_vectors_in_each_matrix(tokenizer):
    model = model_for(tokenizer, share_encoder_decoder_embeddings=False, tie_word_embeddings=False)
    vectors = word_vectors(tokenizer)
    result = init_embeddings(model, vectors, tokenizer)
    assert result["matrices"] == 3
    rows = torch.from_numpy(vectors.seen).clone()
    rows[tokenizer.pad_token_id] = False  # copied nowhere (the output layer's padding row is not zero)
    encoder = model.model.encoder.embed_tokens.weight
    for other in (model.model.decoder.embed_tokens.weight, model.lm_head.weight):
        assert other.data_ptr() != encoder.data_ptr()
        torch.testing.assert_close(other[rows], encoder[rows])


def test_mismatched_vectors_are_refused_with_the_reason(tokenizer):
    model = model_for(tokenizer)
    before = model.model.shared.weight.detach().clone()
    with pytest.raises(WordVectorsError, match=rf"{len(tokenizer) - 1} rows .* vocabulary has {len(tokenizer)}"):
        init_embeddings(model, word_vectors(tokenizer, rows=len(tokenizer) - 1), tokenizer)
    with pytest.raises(WordVectorsError, match=r"dimension 16 but the model's d_model is 32; make them with --dim 32"):
        init_embeddings(model, word_vectors(tokenizer, dim=16), tokenizer)
    other = tiny_tokenizer(["Ganz andere Sätze hier.", "Entirely different sentences."], vocab_size=len(tokenizer))
    assert len(other) == len(tokenizer)
    with pytest.raises(WordVectorsError, match="made with another tokenizer"):
        init_embeddings(model, word_vectors(other), tokenizer)
    zero = word_vectors(tokenizer)
    zero.vectors[:] = 0
    with pytest.raises(WordVectorsError, match="no nonzero row"):
        init_embeddings(model, zero, tokenizer)
    torch.testing.assert_close(model.model.shared.weight, before)  # nothing half-copied


def test_training_run_starts_from_the_vectors_file(tmp_path, tokenizer):
    from train.train import build_model

    path = word_vectors(tokenizer).save(tmp_path / "vectors.safetensors")
    settings = tiny_settings(tmp_path / "data", tmp_path / "run", init_embeddings=str(path))
    assert settings["model"]["d_model"] == D_MODEL
    cfg = TrainConfig.from_dict(settings)
    model = build_model(cfg, tokenizer)
    expected = model_for(tokenizer)
    init_embeddings_from_file(expected, path, tokenizer)
    seen = torch.from_numpy(WordVectors.load(path).seen)
    torch.testing.assert_close(model.model.shared.weight[seen], expected.model.shared.weight[seen])

    with pytest.raises(ValueError, match="init_embeddings=.* with init_from=.*keeps its trained embeddings"):
        TrainConfig.from_dict({**settings, "init_from": str(tmp_path)})


def test_model_card_names_the_embedding_initialisation(tmp_path):
    from train.model_card import hyperparameters

    settings = tiny_settings(tmp_path / "data", tmp_path / "run")
    assert "embedding initialisation" not in hyperparameters(TrainConfig.from_dict(settings))
    card = hyperparameters(TrainConfig.from_dict({**settings, "init_embeddings": "w2v.safetensors"}))
    assert card["embedding initialisation"] == "word vectors w2v.safetensors, rescaled to std d_model^-0.5"
    card = hyperparameters(TrainConfig.from_dict({**settings, "init_embeddings": "word2vec"}))
    assert card["embedding initialisation"].startswith("skip-gram vectors of the training text")


def test_word2vec_init_trains_the_runs_own_vectors_before_the_model(tmp_path, monkeypatch):
    """`init_embeddings: word2vec`: skip-gram vectors of the training text, with the run's tokenizer and d_model,
    saved in the run folder and copied into the new model; a resumed run reuses the file."""
    from train import init_embeddings as module
    from train.model_folder import load_tokenizer
    from train.train import build_model, train

    settings = tiny_settings(
        write_slice(tmp_path / "data"), tmp_path / "run", init_embeddings="word2vec", max_steps=2, test_split=None
    )
    train(TrainConfig.from_dict(settings))
    path = tmp_path / "run" / RUN_WORD_VECTORS
    run_tokenizer = load_tokenizer(tmp_path / "run" / "tokenizer")
    vectors = WordVectors.load(path)
    vectors.check_tokenizer(run_tokenizer)  # the run's ids
    assert vectors.dim == D_MODEL and vectors.seen.sum() > 50
    assert vectors.settings["corpus"] == f"{settings['dataset']} train de+en"
    assert vectors.settings["texts"] == 800  # 400 pairs, source and target each a text

    model = build_model(TrainConfig.from_dict(settings), run_tokenizer)
    expected = model_for(run_tokenizer)
    init_embeddings_from_file(expected, path, run_tokenizer)
    seen = torch.from_numpy(vectors.seen)
    seen[run_tokenizer.pad_token_id] = False
    torch.testing.assert_close(model.model.shared.weight[seen], expected.model.shared.weight[seen])

    def no_training(*args, **kwargs):
        raise AssertionError("the vectors file exists: nothing to train")

    monkeypatch.setattr(module, "word2vec_vectors", no_training)
    assert word2vec_for_run(tmp_path / "run", run_tokenizer, ["a"], D_MODEL, 1, "corpus") == path
