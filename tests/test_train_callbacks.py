"""`train.callbacks`: the time budget (of training, and of the whole run) and its progress display, and the metrics
log after an interruption."""

from __future__ import annotations

import json
import logging
import time
from types import SimpleNamespace

import pytest
from transformers.trainer_utils import IntervalStrategy

from train.callbacks import (
    AFTER_TRAINING_OVERHEAD_SECONDS,
    MetricsLogCallback,
    TimeBudgetCallback,
    TimeBudgetProgressCallback,
    read_metrics,
)


def trainer_state(step: int = 0) -> SimpleNamespace:
    return SimpleNamespace(is_world_process_zero=True, global_step=step, max_steps=100000)


def test_time_budget_bar_counts_minutes_and_estimates_the_end_of_the_run(capsys, monkeypatch):
    clock = {"now": 1000.0}
    monkeypatch.setattr(time, "monotonic", lambda: clock["now"])
    monkeypatch.setattr(time, "time", lambda: 1_700_000_000.0)  # a fixed wall clock for the shown times
    budget = TimeBudgetCallback(12, estimate_after_training=lambda model: 120.0)
    callback = TimeBudgetProgressCallback(budget)
    args, control = SimpleNamespace(), SimpleNamespace()
    budget.on_train_begin(args, trainer_state(), control)
    callback.on_train_begin(args, trainer_state(), control)
    clock["now"] += 180  # 3 of 12 minutes
    callback.on_step_end(args, trainer_state(380), control)
    assert callback.training_bar.n == pytest.approx(3.0) and callback.training_bar.total == 12
    assert callback.status(380).startswith("step 380, training ends ") and "run ends" not in callback.status(380)

    budget.on_evaluate(args, trainer_state(380), control, metrics={"eval_runtime": 24.0}, model=object())
    assert budget.after_training_seconds == 120.0
    training_end = 1_700_000_000.0 + 9 * 60
    expected = time.strftime("%H:%M", time.localtime(training_end + 120))
    assert callback.status(380).endswith(f"run ends ≈ {expected}")
    callback.on_train_end(args, trainer_state(380), control)
    shown = capsys.readouterr().err
    assert "3.0/12 min, step 380, training ends" in shown and "100000" not in shown and ", ," not in shown


class Clocks:
    """`time.monotonic` and `time.time` moving together, by hand."""

    def __init__(self, monkeypatch, wall: float = 1_700_000_000.0):
        self.elapsed, self.wall = 0.0, wall
        monkeypatch.setattr(time, "monotonic", lambda: 1000.0 + self.elapsed)
        monkeypatch.setattr(time, "time", lambda: self.wall + self.elapsed)

    def advance(self, seconds: float) -> None:
        self.elapsed += seconds


def step(budget: TimeBudgetCallback, number: int = 1) -> SimpleNamespace:
    control = SimpleNamespace(should_training_stop=False, should_save=False, should_evaluate=False)
    budget.on_step_end(SimpleNamespace(eval_strategy=IntervalStrategy.STEPS), trainer_state(number), control)
    return control


def test_a_total_budget_stops_training_when_the_work_after_it_would_not_fit(monkeypatch, caplog):
    """15 minutes for the whole run, 12 of them for training: the translations after training (150 s, as timed at
    the validation), the final validation (20 s) and the rest of the work after training
    (`AFTER_TRAINING_OVERHEAD_SECONDS`) are kept free before the deadline."""
    clocks = Clocks(monkeypatch)
    budget = TimeBudgetCallback(12, deadline=clocks.wall + 15 * 60, estimate_after_training=lambda model: 150.0)
    clocks.advance(120)  # preparation before training: 2 minutes of the 15
    budget.on_train_begin(None, None, None)
    clocks.advance(9 * 60)  # 11 of the 15 minutes; before any validation only the 12 minutes of training count
    assert not step(budget).should_training_stop and budget.seconds_left() == pytest.approx(180)
    budget.on_evaluate(None, None, None, metrics={"eval_runtime": 20.0}, model=object())
    left = 15 * 60 - 11 * 60 - (150 + 20 + AFTER_TRAINING_OVERHEAD_SECONDS)
    assert 0 < left < 180 and budget.seconds_left() == pytest.approx(left)
    clocks.advance(left - 1)
    assert not step(budget).should_training_stop
    clocks.advance(1)
    with caplog.at_level(logging.INFO, logger="train.callbacks"):
        control = step(budget, 900)
    assert control.should_training_stop and control.should_save and control.should_evaluate
    trained = f"{(9 * 60 + left) / 60:.1f} of its 12.0 minutes"
    assert budget.stopped_for_deadline and f"training stops at step 900, {trained}" in caplog.text


def test_a_total_budget_with_room_to_spare_leaves_the_training_minutes_alone(monkeypatch):
    clocks = Clocks(monkeypatch)
    budget = TimeBudgetCallback(12, deadline=clocks.wall + 60 * 60, estimate_after_training=lambda model: 180.0)
    budget.on_train_begin(None, None, None)
    budget.on_evaluate(None, None, None, metrics={"eval_runtime": 20.0}, model=object())
    clocks.advance(12 * 60 - 1)
    assert not step(budget).should_training_stop
    clocks.advance(1)
    assert step(budget).should_training_stop and not budget.stopped_for_deadline


def write_log(path, rows, tail: str = "") -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows) + tail, encoding="utf-8")


ROWS = [{"step": step, "epoch": step / 10, "loss": 5.0 - step / 10} for step in (2, 4, 6, 8)]


def test_a_metrics_log_cut_short_loses_only_its_last_line_with_a_warning(tmp_path, caplog):
    path = tmp_path / "metrics.jsonl"
    write_log(path, ROWS, tail='{"step": 10, "epoch": 1.0, "lo')  # killed while writing the line
    with caplog.at_level(logging.WARNING, logger="train.callbacks"):
        assert read_metrics(path) == ROWS
    assert f"{path}:5: dropping the last line" in caplog.text

    resumed = SimpleNamespace(is_world_process_zero=True, global_step=6)
    MetricsLogCallback(path).on_train_begin(SimpleNamespace(), resumed, SimpleNamespace())
    assert path.read_text(encoding="utf-8") == "".join(json.dumps(row) + "\n" for row in ROWS[:3])


def test_a_damaged_metrics_log_is_an_error_naming_the_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    write_log(path, ROWS[:2], tail='{"step": 6, "lo\n' + json.dumps(ROWS[3]) + "\n")
    with pytest.raises(ValueError, match=r"metrics\.jsonl:3: not a metrics row"):
        read_metrics(path)
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"metrics\.jsonl:3"):
        MetricsLogCallback(path).on_train_begin(SimpleNamespace(), trainer_state(8), SimpleNamespace())
    assert path.read_bytes() == before  # left as it was, for the user to look at
