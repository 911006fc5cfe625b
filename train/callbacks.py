"""Trainer callbacks: a JSON-lines metrics log and a PNG plot of training curves."""

from __future__ import annotations

import json
from pathlib import Path

from transformers import TrainerCallback


class MetricsLogCallback(TrainerCallback):
    """Appends every Trainer log (loss, learning rate, validation BLEU, ...) to `metrics.jsonl`.

    On resume the lines past the checkpoint's step are dropped first, so the log has no duplicates.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero and self.path.exists():
            kept = [
                line for line in self.path.read_text().splitlines() if json.loads(line)["step"] <= state.global_step
            ]
            self.path.write_text("".join(line + "\n" for line in kept))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"step": state.global_step, "epoch": state.epoch, **logs}) + "\n")


def read_metrics(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


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


class TimeBudgetCallback(TrainerCallback):
    """Stops training after `minutes` of wall-clock time (measured from `on_train_begin`) and saves a
    checkpoint there, so that a run fits a time budget whatever the machine's speed."""

    def __init__(self, minutes: float):
        self.seconds = minutes * 60
        self.start: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        import time

        self.start = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        import time

        if self.start is not None and time.monotonic() - self.start >= self.seconds:
            control.should_training_stop = True
            control.should_save = True
            control.should_evaluate = False
        return control
