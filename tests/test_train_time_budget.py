"""`train.time_budget`: the time budget of training and of the whole run (`max_total_minutes`), its progress bar,
and the estimate of the work after training that a total budget keeps time for."""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace

import pytest
from transformers.trainer_utils import IntervalStrategy

from tests.train_helpers import tiny_settings
from train.config import TrainConfig
from train.time_budget import (
    AFTER_TRAINING_OVERHEAD_SECONDS,
    RUN_STARTED,
    TIMED_SENTENCES,
    TimeBudgetCallback,
    TimeBudgetProgressCallback,
    after_training_decodings,
    after_training_timer,
    run_deadline,
)
from train.train import train


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
    with caplog.at_level(logging.INFO, logger="train.time_budget"):
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


def test_a_total_budget_estimates_the_work_after_training_as_training_begins(monkeypatch, caplog):
    """A machine slow from the start (another job on its cores): the estimate made as training begins (outputs held
    to their references' length) stops training in time, without waiting for a validation to measure it; the
    first validation's measurements then replace it."""
    clocks = Clocks(monkeypatch)
    models = []

    def before_training(model):
        models.append(model)
        return 400.0, 60.0

    budget = TimeBudgetCallback(
        12,
        deadline=clocks.wall + 15 * 60,
        estimate_after_training=lambda model: 150.0,
        estimate_before_training=before_training,
    )
    clocks.advance(120)
    model = object()
    with caplog.at_level(logging.INFO, logger="train.time_budget"):
        budget.on_train_begin(None, None, None, model=model)
    assert models == [model] and "translations 400 s, final validation 60 s" in caplog.text
    left = 15 * 60 - 2 * 60 - (400 + 60 + AFTER_TRAINING_OVERHEAD_SECONDS)
    assert budget.seconds_left() == pytest.approx(left)
    clocks.advance(left - 1)
    assert not step(budget).should_training_stop
    budget.on_evaluate(None, None, None, metrics={"eval_runtime": 20.0}, model=model)  # measured: less to keep
    assert budget.seconds_left() == pytest.approx(1 + 400 + 60 - 150 - 20)
    clocks.advance(1 + 400 + 60 - 150 - 20)
    assert step(budget).should_training_stop and budget.stopped_for_deadline


def test_without_a_deadline_nothing_is_estimated_before_training():
    budget = TimeBudgetCallback(12, estimate_before_training=lambda model: pytest.fail("estimated without a deadline"))
    budget.on_train_begin(None, None, None, model=object())
    assert budget.after_training_seconds is None and budget.eval_seconds is None


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, [(30, 4)]),  # the test split with the generation config's beam 4
        ({"test_num_beams": 2}, [(30, 2)]),
        (
            {"tune_num_beams": [4, 5], "tune_length_penalties": [0.6, 1.0]},
            [(40, 4), (40, 4), (40, 5), (40, 5), (30, 5)],
        ),
        ({"tune_length_penalties": [0.6, 1.0, 1.4]}, [(40, 4)] * 3 + [(30, 4)]),
        ({"tune_num_beams": [1, 2], "tune_length_penalties": [0.6, 1.0]}, [(40, 1), (40, 2), (40, 2), (30, 2)]),
        ({"test_split": None}, []),
        ({"ema_decay": 0.99, "final_weights": "validation"}, [(40, 4), (40, 4), (30, 4)]),
        ({"ema_decay": 0.99, "final_weights": "ema"}, [(30, 4)]),
    ],
)
def test_the_translations_after_training_are_the_grid_and_the_test(tmp_path, settings, expected):
    """What a time budget reserves time for (`max_total_minutes`) and the progress bar's `run ends ≈` counts."""
    from types import SimpleNamespace

    base = {**tiny_settings(tmp_path, tmp_path / "out"), "test_num_beams": None, "max_eval_samples": 20}
    cfg = TrainConfig.from_dict({**base, **settings})
    model = SimpleNamespace(generation_config=SimpleNamespace(num_beams=4, length_penalty=0.6))
    raw = {"val": [None] * 40, "test2016": [None] * 30}
    assert after_training_decodings(cfg, model, raw) == expected


def test_the_time_after_training_is_extrapolated_from_a_timed_translation(tmp_path, monkeypatch):
    """The timer translates `TIMED_SENTENCES` validation sources spread over the split, with the largest beam after
    training, in eval mode (dropout off), puts the model back in training mode, and scales the time to every
    sentence translated after training."""
    import time
    from types import SimpleNamespace

    import torch
    from datasets import Dataset

    import train.translate

    clock = {"now": 0.0}
    monkeypatch.setattr(time, "perf_counter", lambda: clock["now"])
    calls = []

    def fake_translate(model, tokenizer, texts, *, num_beams):
        calls.append((model.training, list(texts), num_beams))
        clock["now"] += 0.01 * len(texts)  # 10 ms a sentence
        return [""] * len(texts)

    monkeypatch.setattr(train.translate, "translate", fake_translate)
    settings = {
        **tiny_settings(tmp_path, tmp_path / "out"),
        "test_num_beams": None,
        "tune_num_beams": [4, 5],
        "tune_length_penalties": [1.0],
    }
    cfg = TrainConfig.from_dict(settings)
    model = torch.nn.Linear(1, 1)
    model.generation_config = SimpleNamespace(num_beams=4, length_penalty=0.6)
    sources = [f"satz {i}" for i in range(1000)]
    raw = {"val": Dataset.from_dict({"src": sources}), "test2016": Dataset.from_dict({"src": sources[:300]})}
    estimate = after_training_timer(cfg, model, tokenizer=None, raw=raw)
    assert estimate(model) == pytest.approx(0.01 * (1000 + 1000 + 300))
    ((was_training, texts, beams),) = calls
    assert not was_training and model.training and beams == 5
    assert len(texts) == TIMED_SENTENCES and texts[:2] == ["satz 0", "satz 7"] and texts[-1] == "satz 889"
    nothing_after = {**settings, "test_split": None, "tune_num_beams": None, "tune_length_penalties": None}
    assert after_training_timer(TrainConfig.from_dict(nothing_after), model, None, raw) is None


def test_before_training_the_timed_outputs_are_held_to_their_references_mean_length(tmp_path, monkeypatch):
    """As training begins, the timer translates the same sources with the largest beam after training and with the
    validation's beam, every output held to the mean length of those sentences' references (`</s>` included), and
    scales each to the sentences it stands for: every translation after training, and the validation split (at
    most `max_eval_samples`)."""
    import time
    from types import SimpleNamespace

    import torch
    from datasets import Dataset

    import train.translate

    clock = {"now": 0.0}
    monkeypatch.setattr(time, "perf_counter", lambda: clock["now"])
    calls = []

    def fake_translate(model, tokenizer, texts, *, num_beams, **held):
        calls.append((num_beams, held))
        clock["now"] += 0.001 * num_beams * len(texts)  # 1 ms a sentence and beam
        return [""] * len(texts)

    monkeypatch.setattr(train.translate, "translate", fake_translate)

    class WordTokenizer:
        def __call__(self, *, text_target):
            return SimpleNamespace(input_ids=[text.split() + ["</s>"] for text in text_target])

    settings = {
        **tiny_settings(tmp_path, tmp_path / "out"),
        "test_num_beams": None,
        "tune_num_beams": [4, 5],
        "tune_length_penalties": [1.0],
        "eval_num_beams": 1,
        "max_eval_samples": 500,
    }
    model = torch.nn.Linear(1, 1)
    model.generation_config = SimpleNamespace(num_beams=4, length_penalty=0.6)
    targets = ["ein hund", "zwei große hunde rennen"] * 600  # every 9th of them timed: 3 and 5 tokens, 4 on average
    raw = {
        "val": Dataset.from_dict({"src": ["a dog"] * 1200, "tgt": targets}),
        "test2016": Dataset.from_dict({"src": ["a dog"] * 300, "tgt": targets[:300]}),
    }
    timer = after_training_timer(TrainConfig.from_dict(settings), model, WordTokenizer(), raw)
    after, validation = timer.before_training(model)
    assert timer.reference_length() == 4
    assert after == pytest.approx(0.005 * (1200 + 1200 + 300)) and validation == pytest.approx(0.001 * 500)
    held = {"min_new_tokens": 4, "max_new_tokens": 4}
    assert calls == [(5, held), (1, held)] and model.training
    unreferenced = {"val": raw["val"].remove_columns("tgt"), "test2016": raw["test2016"]}
    with pytest.raises(ValueError, match="no references"):
        after_training_timer(TrainConfig.from_dict(settings), model, WordTokenizer(), unreferenced).before_training(
            model
        )


def test_a_total_budget_refuses_a_start_it_cannot_use(tmp_path, monkeypatch):
    """A start time that is not a number, lies in the future or leaves nothing of the budget (an `HVT_RUN_STARTED`
    left exported in a shell) stops the run before any work, naming the variable."""
    cfg = TrainConfig.from_dict(tiny_settings(tmp_path, tmp_path / "out", max_train_minutes=5, max_total_minutes=10))
    monkeypatch.delenv(RUN_STARTED, raising=False)
    assert run_deadline(cfg) == pytest.approx(time.time() + 600, abs=5)
    assert run_deadline(TrainConfig.from_dict({**cfg.to_dict(), "max_total_minutes": None})) is None
    monkeypatch.setenv(RUN_STARTED, str(time.time() - 60))
    assert run_deadline(cfg) == pytest.approx(time.time() + 540, abs=5)
    for given, message in [
        ("yesterday", r"\$HVT_RUN_STARTED='yesterday' is not a time in Unix seconds"),
        (str(time.time() + 3600), r"lies 60.0 minutes in the future"),
        (
            str(time.time() - 3600),
            r"max_total_minutes=10 counted from \$HVT_RUN_STARTED=.*60.0 minutes ago, is already spent",
        ),
    ]:
        monkeypatch.setenv(RUN_STARTED, given)
        with pytest.raises(ValueError, match=message):
            train(cfg)
    assert not (tmp_path / "out").exists()
