"""train/ with the recurrent models (`model_type:`): a tiny run of each end to end on a slice of Multi30k (train ->
average -> evaluate -> card), the toy task learned in seconds, and the model-type checks of the training config."""

from __future__ import annotations

import json

import pytest
import torch

import hf_vanilla_transformer as hvt
from tests.helpers import MISSING_DATA, MULTI30K
from tests.test_toy_task import got_until_eos
from tests.train_helpers import tiny_settings, write_slice
from train.config import TrainConfig
from train.model_folder import load_model
from train.train import train

RNN_SIZES = dict(embedding_size=32, hidden_size=32, encoder_layers=1, decoder_layers=1)


@pytest.mark.skipif(not MULTI30K.is_dir(), reason=MISSING_DATA)
@pytest.mark.parametrize(
    "model_type, model_class, paper",
    [
        ("rnn-encoder-decoder", hvt.RNNEncoderDecoderForConditionalGeneration, "Sutskever"),
        ("rnn-search", hvt.RNNSearchForConditionalGeneration, "Bahdanau"),
    ],
)
def test_a_run_trains_averages_evaluates_and_describes_a_recurrent_model(model_type, model_class, paper, tmp_path):
    data = write_slice(tmp_path / "m30k", sizes=(("train", 200), ("val", 16), ("test2016", 12)))
    settings = tiny_settings(data, tmp_path / "run", model_type=model_type, preset="tiny", model=dict(RNN_SIZES))
    summary = train(TrainConfig.from_dict({**settings, "max_steps": 8, "eval_steps": 4, "max_grad_norm": 1.0}))
    assert summary["steps"] == 8 and summary["averaged_checkpoints"] == ["checkpoint-4", "checkpoint-8"][-3:]
    model, _ = load_model(tmp_path / "run" / "model")
    assert type(model).__name__ == model_class.__name__ and model.config.hidden_size == 32
    results = json.loads((tmp_path / "run" / "model" / "results.test2016.json").read_text())
    assert results["num_beams"] == 2 and 0.0 <= results["bleu"] <= 100.0
    card = (tmp_path / "run" / "model" / "README.md").read_text()
    assert paper in card and "Vaswani" not in card.split("## How to use")[0]
    assert "| hidden units per layer | 32 |" in card and "2.0 · hidden_size^-0.5 · min(step^-0.5" in card


def test_model_type_and_its_fields_are_checked():
    with pytest.raises(ValueError, match=r"model_type must be one of \['vanilla-transformer', 'rnn-encoder-dec"):
        TrainConfig.load(None, ["model_type=lstm"])
    with pytest.raises(ValueError, match=r"preset must be one of \['paper', 'small', 'tiny'\], got 'base'"):
        TrainConfig.load(None, ["model_type=rnn-search", "preset=base"])
    with pytest.raises(ValueError, match="model.d_model is not a RNNSearchConfig field"):
        TrainConfig.load(None, ["model_type=rnn-search", "model.d_model=64"])
    with pytest.raises(ValueError, match="model.hidden_size is not a VanillaTransformerConfig field"):
        TrainConfig.load(None, ["model.hidden_size=64"])
    assert TrainConfig.load(None, ["model_type=rnn-encoder-decoder", "model.cell_type=gru"]).model == {
        "cell_type": "gru"
    }


# ---------------------------------------------------------------------------- toy tasks
SYMBOLS = 8  # ids 4..11; 0-3 are <pad> <s> </s> <unk>


def toy_batch(n: int, generator: torch.Generator, reverse: bool):
    """Sources of 2-5 random symbols + </s>; targets their copy (or reversal) + </s>."""
    lengths = torch.randint(2, 6, (n,), generator=generator)
    width = int(lengths.max()) + 1
    src = torch.zeros(n, width, dtype=torch.long)
    tgt = torch.full((n, width), -100, dtype=torch.long)
    for i, length in enumerate(lengths.tolist()):
        seq = torch.randint(4, 4 + SYMBOLS, (length,), generator=generator)
        src[i, :length], src[i, length] = seq, 2
        tgt[i, :length], tgt[i, length] = (seq.flip(0) if reverse else seq), 2
    return src, (src != 0).long(), tgt


def learn_toy_task(model, reverse: bool, steps: int, lr: float) -> float:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        src, mask, tgt = toy_batch(32, generator, reverse)
        loss = model(input_ids=src, attention_mask=mask, labels=tgt).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return loss.item()


def assert_decodes_unseen_inputs(model, reverse: bool, min_accuracy: float):
    model.eval()
    src, mask, tgt = toy_batch(32, torch.Generator().manual_seed(123), reverse)
    expected = [row[row != -100].tolist() for row in tgt]
    for num_beams in (1, 4):
        out = model.generate(input_ids=src, attention_mask=mask, num_beams=num_beams, max_new_tokens=8)
        correct = sum(got == want for got, want in zip(got_until_eos(out), expected, strict=True))
        assert correct / len(expected) >= min_accuracy, (num_beams, correct)


def test_rnn_encoder_decoder_learns_to_copy():
    """Through the fixed-size state alone (reversed source, Sutskever et al. §3.3), a GRU of 64 units copies."""
    torch.manual_seed(0)
    model = hvt.RNNEncoderDecoderForConditionalGeneration(
        hvt.RNNEncoderDecoderConfig.from_preset("tiny", vocab_size=4 + SYMBOLS, cell_type="gru", hidden_size=64)
    )
    assert learn_toy_task(model, reverse=False, steps=400, lr=1e-2) < 0.1
    assert_decodes_unseen_inputs(model, reverse=False, min_accuracy=0.9)


def test_rnn_search_learns_to_reverse():
    torch.manual_seed(0)
    model = hvt.RNNSearchForConditionalGeneration(
        hvt.RNNSearchConfig.from_preset("tiny", vocab_size=4 + SYMBOLS, hidden_size=64)
    )
    assert learn_toy_task(model, reverse=True, steps=300, lr=2e-2) < 0.05
    assert_decodes_unseen_inputs(model, reverse=True, min_accuracy=1.0)
