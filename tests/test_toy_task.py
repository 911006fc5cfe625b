"""Smoke test: a small model learns to reverse digit strings on CPU in seconds, and generate()
(greedy and beam) reproduces the targets on unseen inputs."""

import pytest
import torch
from transformers import get_scheduler

import hf_vanilla_transformer as hvt
from train.schedule import LR_SCHEDULER_TYPE, peak_learning_rate

SYMBOLS = 10  # ids 4..13; 0-3 are <pad> <s> </s> <unk>


def make_batch(n: int, generator: torch.Generator):
    lengths = torch.randint(3, 9, (n,), generator=generator)
    width = int(lengths.max()) + 1
    src = torch.zeros(n, width, dtype=torch.long)
    tgt = torch.full((n, width), -100, dtype=torch.long)
    for i, length in enumerate(lengths.tolist()):
        seq = torch.randint(4, 4 + SYMBOLS, (length,), generator=generator)
        src[i, :length], src[i, length] = seq, 2
        tgt[i, :length], tgt[i, length] = seq.flip(0), 2
    return src, (src != 0).long(), tgt


@pytest.fixture
def one_thread():
    """One torch thread during the test, whatever earlier tests left set: the float rounding of 500 steps, and so
    how well this tiny model learns, depends on the summation order (with 2 threads an Intel Xeon left 5 of the 32
    reversals wrong and a last loss of 0.061, where an AMD EPYC passed; the suite passed where an earlier test had
    set one thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_small_preset_learns_to_reverse(one_thread):
    torch.manual_seed(0)
    config = hvt.VanillaTransformerConfig.small(
        vocab_size=4 + SYMBOLS,
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        dropout=0.0,
        max_position_embeddings=32,
    )
    model = hvt.VanillaTransformerForConditionalGeneration(config)
    steps, warmup = 500, 50
    # The training recipe's optimiser and schedule (§5.3, `train.schedule`), peak 3.5e-3 at step 50.
    peak = peak_learning_rate(config.d_model, warmup, factor=0.2)
    optimizer = torch.optim.Adam(model.parameters(), lr=peak, betas=(0.9, 0.98), eps=1e-9)
    schedule = get_scheduler(LR_SCHEDULER_TYPE, optimizer, num_warmup_steps=warmup, num_training_steps=steps)
    g = torch.Generator().manual_seed(0)
    model.train()
    losses = []
    for _ in range(steps):
        src, mask, tgt = make_batch(64, g)
        loss = model(input_ids=src, attention_mask=mask, labels=tgt).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    # The loss starts at about 3.1. One batch's loss at the end moves with float rounding (0.061 on an Intel Xeon,
    # below 0.05 on an AMD EPYC; single batches of the last 20 steps reach 0.23): the mean of the last 20 is steadier.
    assert sum(losses[-20:]) / 20 < 0.15, losses[-20:]

    model.eval()
    src, mask, tgt = make_batch(32, torch.Generator().manual_seed(123))
    expected = [row[row != -100].tolist() for row in tgt]
    # At most 2 of the 32 may miss: a long sequence now and then has two neighbours swapped or one symbol
    # repeated, depending on float rounding (thread count, summation order) over 500 steps; a model that has
    # not learned, or a broken generate(), gets next to none right. (Exactness of the decoding paths is
    # tested against uncached decoding in test_decoding_fast_path.py.)
    for num_beams in (1, 4):
        out = model.generate(input_ids=src, attention_mask=mask, num_beams=num_beams, max_new_tokens=12)
        assert (out[:, 0] == config.decoder_start_token_id).all()
        got = got_until_eos(out)
        misses = [(i, g, e) for i, (g, e) in enumerate(zip(got, expected, strict=True)) if g != e]
        assert len(misses) <= 2, misses


def got_until_eos(out: torch.Tensor) -> list[list[int]]:
    """Tokens after <s> up to and including the first </s>. (transformers' beam search fills finished
    rows with `pad_token_id or eos_token_id`, i.e. with </s> when <pad> has id 0; greedy uses <pad>.)"""
    rows = []
    for row in out[:, 1:].tolist():
        rows.append(row[: row.index(2) + 1] if 2 in row else row)
    return rows
