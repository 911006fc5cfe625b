"""Trainer callbacks: a JSON-lines metrics log and a PNG plot of training curves, a time budget and its
progress bar, checkpoint rotation that keeps the last checkpoints."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm
from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback
from transformers.trainer_utils import IntervalStrategy

from train.lines import decode_utf8, split_lines, write_text_atomic

logger = logging.getLogger(__name__)


class MetricsLogCallback(TrainerCallback):
    """Appends every Trainer log (loss, learning rate, validation BLEU, ...) to `metrics.jsonl`.

    On resume the lines past the checkpoint's step are dropped first, so the log has no duplicates;
    a last line cut short by an interruption is dropped too, with a warning (`read_metrics`).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.keep_until(state.global_step)

    def keep_until(self, step: int) -> None:
        """Drop the rows logged after `step` (and a last line cut short) from an existing log."""
        if self.path.exists():
            kept = [row for row in read_metrics(self.path) if row["step"] <= step]
            write_text_atomic(self.path, "".join(json.dumps(row) + "\n" for row in kept))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"step": state.global_step, "epoch": state.epoch, **logs}) + "\n")


def read_metrics(path: str | Path) -> list[dict]:
    """The rows of a `metrics.jsonl`. A last line that is not complete JSON (the run was killed while
    writing it) is left out with a warning naming the file; any other bad line is an error naming
    the file and line, since the log would then be damaged rather than merely cut short."""
    path = Path(path)
    lines = split_lines(decode_utf8(path.read_bytes(), str(path)))
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("step"), int):
                raise ValueError("not a log row with a step")
        except ValueError as error:
            if number == len(lines):
                logger.warning("%s:%d: dropping the last line, cut short by an interruption (%s)", path, number, error)
                break
            raise ValueError(f"{path}:{number}: not a metrics row ({error}); the log is damaged") from error
        rows.append(row)
    return rows


def plot_metrics(metrics_path: str | Path, png_path: str | Path) -> Path:
    """Training and validation loss, learning rate and validation BLEU over steps, in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)

    def series(key: str) -> tuple[list[int], list[float]]:
        points = [(r["step"], r[key]) for r in rows if key in r]
        return [p[0] for p in points], [p[1] for p in points]

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    axes[0].plot(*series("loss"), label="training loss (label-smoothed)")
    axes[0].plot(*series("eval_loss"), "o-", label="validation loss")
    axes[0].set_xlabel("step")
    axes[0].legend()
    axes[1].plot(*series("learning_rate"))
    axes[1].set_title("learning rate")
    axes[1].set_xlabel("step")
    axes[2].plot(*series("eval_bleu"), "o-")
    axes[2].set_title("validation BLEU (sacreBLEU)")
    axes[2].set_xlabel("step")
    fig.tight_layout()
    png_path = Path(png_path)
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return png_path


class KeepLastCheckpointsCallback(TrainerCallback):
    """Without a best metric (`metric_for_best_model=None`), forgets the best checkpoint that a resumed run's state
    still names, so that the Trainer's rotation keeps the last `save_total_limit` checkpoints, the ones
    averaged. (The Trainer keeps a best checkpoint outside its rotation, and names it again from
    `best_global_step` at every save; a run resumed from a checkpoint written with a best metric would otherwise
    keep that one instead of one of the last.)"""

    def on_train_begin(self, args, state, control, **kwargs):
        if args.metric_for_best_model is None and (state.best_model_checkpoint or state.best_global_step):
            logger.info("no best checkpoint in this run: %s rotates like the others", state.best_model_checkpoint)
            state.best_model_checkpoint = state.best_global_step = state.best_metric = None


AFTER_TRAINING_OVERHEAD_SECONDS = 30.0
"""Work after training besides translating (averaging checkpoints, loading the model, scoring, the card), kept free
before a deadline: about 7 s in the quick recipe and 27 s in a long run with its 10 decodings (their summaries'
`total_minutes - minutes_until_trained` less their translations' `translate_seconds`)."""


class TimeBudgetCallback(TrainerCallback):
    """Stops training after `minutes` of wall-clock time (measured from `on_train_begin`), and
    validates (if the run validates at all) and saves a checkpoint there, so that a run fits a time
    budget whatever the machine's speed and its last validation is of its final weights.

    At each validation it also estimates the work after training (the test translation, a decoding grid) with
    `estimate_after_training(model) -> seconds` (None: not estimated; `train.train.after_training_timer`). With
    `deadline` (a `time.time()` moment: the end of the whole run's budget, `TrainConfig.max_total_minutes`)
    training stops earlier when the time left before the deadline would no longer hold that work, the final
    validation and `AFTER_TRAINING_OVERHEAD_SECONDS`. Before the first validation there is no estimate, and only
    `minutes` applies.
    """

    def __init__(
        self,
        minutes: float,
        deadline: float | None = None,
        estimate_after_training: Callable[[Any], float] | None = None,
    ):
        self.seconds = minutes * 60
        self.deadline = deadline
        self.estimate_after_training = estimate_after_training
        self.start: float | None = None
        self.eval_seconds: float | None = None
        self.after_training_seconds: float | None = None
        self.stopped_for_deadline = False

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.monotonic()

    def fraction_spent(self) -> float:
        """The fraction of `minutes` spent so far (0 before training begins, 1 at its end)."""
        if self.start is None or self.seconds <= 0:
            return 0.0 if self.start is None else 1.0
        return min((time.monotonic() - self.start) / self.seconds, 1.0)

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        if metrics and "eval_runtime" in metrics:
            self.eval_seconds = metrics["eval_runtime"]
        if self.estimate_after_training is not None and model is not None:
            self.after_training_seconds = self.estimate_after_training(model)

    def seconds_left(self) -> float:
        """Seconds of training left: of `minutes`, or less if the deadline comes first."""
        elapsed = time.monotonic() - self.start if self.start is not None else 0.0
        left = self.seconds - elapsed
        if self.deadline is not None and self.after_training_seconds is not None:
            left = min(left, self.deadline - time.time() - self.reserve_seconds())
        return max(left, 0.0)

    def reserve_seconds(self) -> float:
        """What a deadline keeps free after training: the final validation, the translations, the rest."""
        return (self.eval_seconds or 0.0) + (self.after_training_seconds or 0.0) + AFTER_TRAINING_OVERHEAD_SECONDS

    def on_step_end(self, args, state, control, **kwargs):
        if self.start is not None and self.seconds_left() <= 0:
            self.stopped_for_deadline = time.monotonic() - self.start < self.seconds
            if self.stopped_for_deadline:
                logger.info(
                    "training stops at step %d, %.1f of its %.1f minutes: the work after training (about %.1f "
                    "minutes) must end before the whole run's deadline (max_total_minutes)",
                    state.global_step,
                    (time.monotonic() - self.start) / 60,
                    self.seconds / 60,
                    self.reserve_seconds() / 60,
                )
            control.should_training_stop = True
            control.should_save = True
            control.should_evaluate = args.eval_strategy != IntervalStrategy.NO
        return control


class TimeBudgetProgressCallback(ProgressCallback):
    """The Trainer's progress bar, measured against a time budget (`TimeBudgetCallback`) instead of `max_steps`.

    With a time budget the run stops long before `max_steps` (100000 in the recipe), so the
    Trainer's bar (`…/100000` steps, an ETA of hours) would be wrong. This bar fills with the
    minutes of the budget, and shows the step and the estimated end of training and of the whole run (the
    budget's estimate of the work after training). Evaluation bars and log lines are the Trainer's own.
    """

    BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:g} min{postfix}"

    def __init__(self, budget: TimeBudgetCallback):
        super().__init__()
        self.budget = budget
        self.minutes = budget.seconds / 60
        self.start = time.monotonic()

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.monotonic()
        if state.is_world_process_zero:
            self.training_bar = tqdm(
                total=self.minutes, desc="training (time budget)", bar_format=self.BAR_FORMAT, dynamic_ncols=True
            )
        self.current_step = 0

    def on_step_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None:
            self.training_bar.n = min((time.monotonic() - self.start) / 60, self.minutes)
            self.training_bar.set_postfix_str(self.status(state.global_step), refresh=True)
        self.current_step = state.global_step

    def status(self, step: int) -> str:
        """`step 380, training ends 14:05, run ends ≈ 14:09` (clock times of this machine); tqdm puts the ", "
        before a postfix itself."""
        training_end = time.time() + self.budget.seconds_left()
        text = f"step {step}, training ends {time.strftime('%H:%M', time.localtime(training_end))}"
        if self.budget.after_training_seconds is not None:
            run_end = training_end + self.budget.after_training_seconds
            text += f", run ends ≈ {time.strftime('%H:%M', time.localtime(run_end))}"
        return text
