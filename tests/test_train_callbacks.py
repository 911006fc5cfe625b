"""`train.callbacks`: the metrics log after an interruption."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest

from train.callbacks import (
    MetricsLogCallback,
    read_metrics,
)


def trainer_state(step: int = 0) -> SimpleNamespace:
    return SimpleNamespace(is_world_process_zero=True, global_step=step, max_steps=100000)


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
