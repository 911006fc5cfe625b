"""Tests of `train.schedule`: the §5.3 learning rate and Adam settings."""

from __future__ import annotations

import math
import pickle

import pytest
import torch
from transformers import TrainingArguments, get_scheduler

from train.schedule import adam_for_transformer, noam_lr, noam_schedule


def closed_form(step: int, d_model: int, warmup: int) -> float:
    """The paper's formula, written out independently."""
    if step <= warmup:
        return step / (math.sqrt(d_model) * warmup**1.5)
    return 1 / math.sqrt(d_model * step)


@pytest.mark.parametrize("step", [1, 2, 100, 3999, 4000, 4001, 10_000, 100_000])
def test_noam_lr_matches_closed_form(step: int) -> None:
    assert noam_lr(step, 512, 4000) == pytest.approx(closed_form(step, 512, 4000), rel=1e-12)
    assert noam_lr(step, 512, 4000, factor=2.0) == pytest.approx(2 * closed_form(step, 512, 4000), rel=1e-12)


def test_noam_lr_peaks_at_warmup() -> None:
    values = [noam_lr(step, 512, 4000) for step in range(1, 20_001)]
    assert values.index(max(values)) + 1 == 4000
    assert max(values) == pytest.approx((512 * 4000) ** -0.5) == pytest.approx(6.988e-4, rel=1e-3)


def test_noam_lr_rejects_step_zero_and_bad_sizes() -> None:
    with pytest.raises(ValueError, match="step counts from 1"):
        noam_lr(0, 512, 4000)
    with pytest.raises(ValueError, match="warmup must be >= 1"):
        noam_lr(1, 512, 0)


def run_schedule(scheduler: torch.optim.lr_scheduler.LRScheduler, steps: int) -> list[float]:
    """The learning rate used by each of the first `steps` optimizer updates."""
    optimizer = scheduler.optimizer
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def make_optimizer(lr: float = 123.0) -> torch.optim.Adam:
    return adam_for_transformer([torch.nn.Parameter(torch.zeros(2))], lr=lr)


def test_noam_schedule_gives_absolute_lr_from_step_one() -> None:
    d_model, warmup = 64, 10
    rates = run_schedule(noam_schedule(make_optimizer(), d_model, warmup), 50)
    assert rates == pytest.approx([closed_form(k + 1, d_model, warmup) for k in range(50)], rel=1e-12)
    scaled = run_schedule(noam_schedule(make_optimizer(), d_model, warmup, factor=2.0), 50)
    assert scaled == pytest.approx([2 * r for r in rates], rel=1e-12)


def test_noam_schedule_resumes_from_state_dict() -> None:
    """As the Trainer resumes: optimizer and scheduler state are both saved and loaded."""
    first = noam_schedule(make_optimizer(), 64, 10)
    run_schedule(first, 7)
    saved = pickle.loads(pickle.dumps((first.optimizer.state_dict(), first.state_dict())))
    resumed = noam_schedule(make_optimizer(), 64, 10)
    resumed.optimizer.load_state_dict(saved[0])
    resumed.load_state_dict(saved[1])
    assert run_schedule(resumed, 5) == pytest.approx([closed_form(k + 1, 64, 10) for k in range(7, 12)], rel=1e-12)


def test_transformers_inverse_sqrt_is_the_paper_schedule_one_step_later() -> None:
    """hf-v5-facts.md: `inverse_sqrt` with `learning_rate = (d_model * warmup) ** -0.5` and
    `warmup_steps = warmup` reproduces §5.3 shifted by one step. Update k (from 0) of the
    Trainer's schedule uses lrate(k), so its first update has lr 0; `noam_schedule` uses lrate(k+1)."""
    d_model, warmup, steps = 64, 10, 60
    args = TrainingArguments(output_dir="unused", warmup_steps=warmup, lr_scheduler_type="inverse_sqrt")
    hf = get_scheduler(
        args.lr_scheduler_type,
        optimizer=make_optimizer(lr=(d_model * warmup) ** -0.5),
        num_warmup_steps=args.get_warmup_steps(steps),
        num_training_steps=steps,
    )
    hf_rates = run_schedule(hf, steps + 1)
    ours = run_schedule(noam_schedule(make_optimizer(), d_model, warmup), steps)
    assert hf_rates[0] == 0.0
    assert hf_rates[1:] == pytest.approx(ours, rel=1e-12)


def test_adam_uses_paper_hyper_parameters() -> None:
    optimizer = make_optimizer(lr=0.5)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["betas"], group["eps"]) == (0.5, (0.9, 0.98), 1e-9)
