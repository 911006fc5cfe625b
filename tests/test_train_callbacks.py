"""`train.callbacks`: the time-budget progress display, and the metrics log after an interruption."""

from __future__ import annotations

import json
import logging
import time
from types import SimpleNamespace

import pytest

from train.callbacks import MetricsLogCallback, TimeBudgetProgressCallback, read_metrics


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
    assert callback.status(380).startswith("step 380, training ends ") and "run ends" not in callback.status(380)

    callback.on_evaluate(args, trainer_state(380), control, metrics={"eval_runtime": 24.0})
    assert callback.after_training_seconds == 120.0  # 24 s of validation x 5
    training_end = 1_700_000_000.0 + 9 * 60
    expected = time.strftime("%H:%M", time.localtime(training_end + 120))
    assert callback.status(380).endswith(f"run ends ≈ {expected}")
    callback.on_train_end(args, trainer_state(380), control)
    shown = capsys.readouterr().err
    assert "3.0/12 min, step 380, training ends" in shown and "100000" not in shown and ", ," not in shown


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
