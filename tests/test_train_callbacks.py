"""`train.callbacks`: the time-budget progress display, and the metrics log after an interruption."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from train.callbacks import TimeBudgetProgressCallback


def trainer_state(step: int = 0) -> SimpleNamespace:
    return SimpleNamespace(is_world_process_zero=True, global_step=step, max_steps=100000)


def test_time_budget_bar_counts_minutes_and_estimates_the_end_of_the_run(capsys, monkeypatch):
    clock = {"now": 1000.0}
    monkeypatch.setattr(time, "monotonic", lambda: clock["now"])
    monkeypatch.setattr(time, "time", lambda: 1_700_000_000.0)  # a fixed wall clock for the shown times
    callback = TimeBudgetProgressCallback(12, after_training_per_eval_second=5.0)
    args, control = SimpleNamespace(), SimpleNamespace()
    callback.on_train_begin(args, trainer_state(), control)
    clock["now"] += 180  # 3 of 12 minutes
    callback.on_step_end(args, trainer_state(380), control)
    assert callback.training_bar.n == pytest.approx(3.0) and callback.training_bar.total == 12
    assert callback.status(380).startswith(", step 380, training ends ") and "run ends" not in callback.status(380)

    callback.on_evaluate(args, trainer_state(380), control, metrics={"eval_runtime": 24.0})
    assert callback.after_training_seconds == 120.0  # 24 s of validation x 5
    training_end = 1_700_000_000.0 + 9 * 60
    expected = time.strftime("%H:%M", time.localtime(training_end + 120))
    assert callback.status(380).endswith(f"run ends ≈ {expected}")
    callback.on_train_end(args, trainer_state(380), control)
    shown = capsys.readouterr().err
    assert "3.0/12 min" in shown and "100000" not in shown
