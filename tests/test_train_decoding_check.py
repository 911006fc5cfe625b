"""train.decoding_check: a run whose decoding fast paths stop computing what the model computes stops at
its next validation."""

import contextlib

import pytest
import torch
import transformers

import hf_vanilla_transformer.modeling_vanilla_transformer as modeling
from hf_vanilla_transformer import generation, onednn
from tests.helpers import random_batch, tiny_model
from train.decoding_check import BrokenDecodingError, DecodingCheckCallback, check_decoding

SOURCES = [[5, 6, 7, 8, 2], [9, 10, 2], [11, 12, 13, 2]]


def test_working_decoding_passes_and_every_generated_token_is_checked():
    model = tiny_model()
    checked = check_decoding(model, SOURCES, pad_token_id=0, max_new_tokens=12)
    assert 3 <= checked <= 3 * 12  # each row's tokens up to its end of sentence


def test_a_model_that_ignores_its_cache_is_caught(monkeypatch):
    """What transformers 5.24 did to the old code: the cache never reached the decoder."""
    monkeypatch.setattr(modeling, "resolve_cache", lambda cache, past_key_values, where: None)
    with pytest.raises(BrokenDecodingError, match=f"under transformers {transformers.__version__}"):
        check_decoding(tiny_model(), SOURCES, pad_token_id=0)
    callback = DecodingCheckCallback(SOURCES, pad_token_id=0)
    with pytest.raises(BrokenDecodingError):
        callback.on_evaluate(None, None, None, model=tiny_model())


def fused_adamw_step(model):
    """One step of torch's fused AdamW (transformers' default optimizer), which bumps no version counter."""
    batch = random_batch(seed=7)
    labels = batch.pop("decoder_input_ids")
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.05, fused=True)
    model.train()
    model(**batch, labels=labels).loss.backward()
    optimizer.step()
    model.eval()


def test_packed_weights_kept_across_validations_are_caught(monkeypatch):
    """What a oneDNN weight cache kept from one `generate()` to the next did after a fused optimizer step."""
    kept = {}

    @contextlib.contextmanager
    def packed_weights_kept():
        token = onednn._PACKED.set(kept)  # one dict for every call, as the cache was
        try:
            yield
        finally:
            onednn._PACKED.reset(token)

    monkeypatch.setattr(generation, "packed_weights", packed_weights_kept)
    model = tiny_model()
    callback = DecodingCheckCallback(SOURCES, pad_token_id=0)
    with onednn.prefer_onednn(True):  # the route on every CPU, whether or not it pays on this one
        callback.on_evaluate(None, None, None, model=model)  # the first validation packs the weights
        fused_adamw_step(model)
        with pytest.raises(BrokenDecodingError, match="not rank first"):
            callback.on_evaluate(None, None, None, model=model)


def test_every_validation_is_checked_and_passes_after_optimizer_steps():
    model = tiny_model()
    callback = DecodingCheckCallback(SOURCES, pad_token_id=0)
    for _ in range(3):
        callback.on_evaluate(None, None, None, model=model)
        fused_adamw_step(model)
    assert callback.checks == 3


class FixedScores(torch.nn.Module):
    """A stand-in model: `generate` returns `chosen` after the start token; the plain forward scores every step
    with `logits`, so the check compares the two exactly as given."""

    def __init__(self, chosen, logits):
        super().__init__()
        self.chosen, self.logits = torch.tensor([chosen]), torch.tensor([logits], dtype=torch.float32)
        self.generation_config = transformers.GenerationConfig(eos_token_id=2)
        self.device = torch.device("cpu")

    def generate(self, **kwargs):
        return torch.cat([torch.ones(1, 1, dtype=torch.long), self.chosen], dim=1)

    def forward(self, **kwargs):
        return transformers.modeling_outputs.Seq2SeqLMOutput(logits=self.logits)


@pytest.mark.parametrize(
    ("runner_up", "caught"),
    [(12.0 - 1 / 16, False), (12.0 - 1.0, True)],  # one bf16 step below the best at 12 (autocast rounding) / a unit
)
def test_a_near_tie_at_bf16_resolution_passes_and_a_clear_miss_does_not(runner_up, caught):
    """Under bf16 autocast logits of 8-16 are multiples of 1/16: the fast and the plain computation may break a
    near-tie differently (a real run's validation did, 1 token of 119), which is not a broken decoding."""
    logits = [[0.0, 0.0, 1.0, 12.0, runner_up], [0.0, 0.0, 9.0, 1.0, 1.0]]  # step 1: token 3 best; step 2: eos
    model = FixedScores(chosen=[4, 2], logits=logits)  # step 1 took the runner-up
    if caught:
        with pytest.raises(BrokenDecodingError, match="1 of 2 tokens"):
            check_decoding(model, [[5, 2]], pad_token_id=0)
    else:
        assert check_decoding(model, [[5, 2]], pad_token_id=0) == 2
