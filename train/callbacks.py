"""Trainer callbacks: a JSON-lines metrics log and a PNG plot of training curves, checkpoint rotation that keeps the
last checkpoints. The time budgets and their progress bar are `train.time_budget`'s."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from transformers import TrainerCallback

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
