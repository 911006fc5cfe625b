"""The learning-rate schedule and optimiser training really uses (§5.3): the Trainer's, built from
`train.train.training_arguments`, compared step by step with the paper's formula written out here."""

from __future__ import annotations

import math

import pytest
import torch
from datasets import Dataset

from tests.helpers import tiny_model
from train.config import TrainConfig
from train.schedule import cooldown_factor, peak_learning_rate
from train.time_budget import TimeBudgetCallback
from train.train import cooldown_multiplier, training_arguments
from train.trainer import TokenBudgetSeq2SeqTrainer


def paper_lrate(step_num: int, d_model: int, warmup: int) -> float:
    """§5.3: d_model^-0.5 * min(step_num^-0.5, step_num * warmup^-1.5), written out independently."""
    if step_num <= warmup:
        return step_num / (math.sqrt(d_model) * warmup**1.5)
    return 1 / math.sqrt(d_model * step_num)


def training_optimizer_and_scheduler(tmp_path, time_budget=None, **settings):
    """The optimiser and scheduler a training run builds, for a model of width 32."""
    cfg = TrainConfig.from_dict({"output_dir": str(tmp_path), **settings})
    model = tiny_model()
    unused = Dataset.from_dict({"input_ids": [[4, 2]], "labels": [[4, 2]]})  # the Trainer wants one to validate on
    trainer = TokenBudgetSeq2SeqTrainer(
        model=model,
        args=training_arguments(cfg, model.config.d_model),
        eval_dataset=unused,
        max_tokens=64,
        lr_multiplier=cooldown_multiplier(cfg, time_budget),
    )
    trainer.create_optimizer_and_scheduler(num_training_steps=cfg.max_steps)
    return trainer.optimizer, trainer.lr_scheduler


def rates_of_updates(optimizer, scheduler, steps: int) -> list[float]:
    """The learning rate each of the first `steps` optimizer updates uses (as in the training loop)."""
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


@pytest.mark.parametrize(("warmup", "factor"), [(10, 1.0), (7, 2.5)])
def test_training_schedule_is_the_paper_formula_one_update_late(tmp_path, warmup, factor):
    """Update k (from 0) uses factor * lrate(k): 0 for the first update, then the paper's curve."""
    d_model, steps = 32, 80
    optimizer, scheduler = training_optimizer_and_scheduler(
        tmp_path, warmup_steps=warmup, lr_factor=factor, max_steps=steps
    )
    rates = rates_of_updates(optimizer, scheduler, steps)
    assert rates[0] == 0.0
    assert rates[1:] == pytest.approx([factor * paper_lrate(k, d_model, warmup) for k in range(1, steps)], rel=1e-12)
    assert max(rates) == pytest.approx(factor * (d_model * warmup) ** -0.5, rel=1e-12) == rates[warmup]


def test_warmup_total_falls_short_by_one_peak_update(tmp_path):
    """The `train.schedule` docstring's claim: over the warm-up the summed rate is short by one
    update at the peak rate, 2 / warmup of the paper's warm-up total."""
    d_model, warmup = 32, 40
    optimizer, scheduler = training_optimizer_and_scheduler(tmp_path, warmup_steps=warmup, lr_factor=1.0)
    used = sum(rates_of_updates(optimizer, scheduler, warmup))
    paper = sum(paper_lrate(k + 1, d_model, warmup) for k in range(warmup))
    peak = (d_model * warmup) ** -0.5
    assert paper - used == pytest.approx(peak, rel=1e-9)
    assert (paper - used) / paper == pytest.approx(2 / (warmup + 1), rel=1e-9)  # ~2 / warmup


def test_training_optimizer_is_the_papers_adam(tmp_path):
    optimizer, _ = training_optimizer_and_scheduler(tmp_path)
    assert isinstance(optimizer, torch.optim.Adam | torch.optim.AdamW)
    for group in optimizer.param_groups:
        assert (group["betas"], group["eps"], group["weight_decay"]) == ((0.9, 0.98), 1e-9, 0.0)


def test_peak_learning_rate() -> None:
    assert peak_learning_rate(512, 4000) == pytest.approx(6.988e-4, rel=1e-3)  # the base model's peak
    assert peak_learning_rate(256, 400, factor=0.25) == pytest.approx(7.8e-4, rel=1e-2)  # the quick recipe's
    with pytest.raises(ValueError, match="warmup_steps must be >= 1"):
        peak_learning_rate(512, 0)
    with pytest.raises(ValueError, match="factor must be > 0"):
        peak_learning_rate(512, 4000, factor=0.0)


def test_cooldown_factor_is_one_then_linear_to_zero():
    assert [cooldown_factor(p, 0.2) for p in (0.0, 0.5, 0.8, 0.9, 0.95, 1.0, 1.2)] == pytest.approx(
        [1.0, 1.0, 1.0, 0.5, 0.25, 0.0, 0.0]
    )
    assert cooldown_factor(0.99, 0.0) == 1.0
    with pytest.raises(ValueError, match="cooldown_fraction must be in"):
        cooldown_factor(0.5, 1.0)
    with pytest.raises(ValueError, match="cooldown_fraction must be in"):
        TrainConfig.from_dict({"cooldown_fraction": -0.1})


def test_step_cooldown_multiplies_the_paper_curve(tmp_path):
    """Without a time budget the cool-down is over the last fraction of max_steps: update k uses
    lrate(k) * min(1, (1 - k / max_steps) / fraction), and the logged rate is the one used."""
    d_model, warmup, steps = 32, 10, 80
    optimizer, scheduler = training_optimizer_and_scheduler(
        tmp_path, warmup_steps=warmup, lr_factor=1.0, max_steps=steps, cooldown_fraction=0.25
    )
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        assert scheduler.get_last_lr()[0] == rates[-1]
        optimizer.step()
        scheduler.step()
    expected = [paper_lrate(k, d_model, warmup) * min(1.0, (1 - k / steps) / 0.25) for k in range(1, steps)]
    assert rates[1:] == pytest.approx(expected, rel=1e-12)
    assert rates[59] == pytest.approx(paper_lrate(59, d_model, warmup))  # before the last quarter: untouched
    assert rates[70] == pytest.approx(paper_lrate(70, d_model, warmup) * 0.5)


def test_time_cooldown_follows_the_budget_clock(tmp_path, monkeypatch):
    """With a time budget the factor follows the minutes spent, whatever the step."""
    now = [1000.0]
    monkeypatch.setattr("train.time_budget.time.monotonic", lambda: now[0])
    budget = TimeBudgetCallback(minutes=10)
    optimizer, scheduler = training_optimizer_and_scheduler(
        tmp_path, time_budget=budget, warmup_steps=1, lr_factor=1.0, cooldown_fraction=0.2
    )
    budget.on_train_begin(None, None, None)
    rates = {}
    for minutes in (1, 8, 9, 9.5, 10, 11):
        now[0] = 1000.0 + 60 * minutes
        optimizer.step()
        scheduler.step()
        rates[minutes] = optimizer.param_groups[0]["lr"] / paper_lrate(scheduler.last_epoch, 32, 1)
    assert rates == pytest.approx({1: 1.0, 8: 1.0, 9: 0.5, 9.5: 0.25, 10: 0.0, 11: 0.0})
