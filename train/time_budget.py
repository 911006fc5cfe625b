"""Time budgets: of training (`max_train_minutes`) and of the whole run (`max_total_minutes`), and the progress bar
that counts their minutes.

A run that trains for a time budget stops on time whatever the machine's speed. A run with a total budget also
keeps time free for what it does after training (averaging, the decoding grid on validation, the test): it times a
translation of a few validation sentences at each validation and stops training early when the rest would not fit.
`make recipe` gives the quick start's main command 15 minutes this way, counting the creation of `.venv`
(`$HVT_RUN_STARTED`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

import torch
from datasets import DatasetDict
from tqdm.auto import tqdm
from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback
from transformers.trainer_utils import IntervalStrategy

from train.config import TrainConfig

logger = logging.getLogger(__name__)


RUN_STARTED = "HVT_RUN_STARTED"
"""Environment variable: when the whole run began, in Unix seconds (`date +%s`). `make recipe` sets it before it
builds `.venv`, so that `max_total_minutes` counts the installation too."""


def run_deadline(cfg: TrainConfig) -> float | None:
    """The `time.time()` moment by which the whole run must have ended (`max_total_minutes`, counted from
    `$HVT_RUN_STARTED` or else from now), or None without a total budget. A start that cannot be read, lies in the
    future or leaves no time at all is an error here, before any work (an `HVT_RUN_STARTED` left exported in a
    shell would otherwise cut the next run to one step)."""
    if cfg.max_total_minutes is None:
        return None
    now = time.time()
    given = os.environ.get(RUN_STARTED)
    if given is None:
        return now + cfg.max_total_minutes * 60
    try:
        started = float(given)
    except ValueError:
        raise ValueError(f"${RUN_STARTED}={given!r} is not a time in Unix seconds (as `date +%s` prints)") from None
    if started > now + 60:
        raise ValueError(f"${RUN_STARTED}={given} lies {(started - now) / 60:.1f} minutes in the future")
    if started + cfg.max_total_minutes * 60 <= now:
        raise ValueError(
            f"max_total_minutes={cfg.max_total_minutes} counted from ${RUN_STARTED}={given}, "
            f"{(now - started) / 60:.1f} minutes ago, is already spent: unset {RUN_STARTED} (the budget then counts "
            "from now) or raise max_total_minutes"
        )
    return started + cfg.max_total_minutes * 60


def after_training_decodings(cfg: TrainConfig, model, raw: DatasetDict) -> list[tuple[int, int]]:
    """The translations a run makes after training, as (sentences, beam size): with `final_weights: validation`,
    both candidate weights on the whole validation split; the decoding grid on the whole validation split
    (`tune_num_beams` x `tune_length_penalties`); then the test split (with the grid's largest beam, not chosen yet)."""
    from train.tune_decoding import decoding_grid

    decodings = []
    default_beams = cfg.test_num_beams or model.generation_config.num_beams or 1
    if cfg.ema_decay is not None and cfg.final_weights == "validation":  # both candidates on the validation split
        decodings += 2 * [(len(raw[cfg.eval_split]), default_beams)]
    if cfg.tunes_decoding:
        defaults = model.generation_config
        grid = decoding_grid(
            cfg.tune_num_beams or [defaults.num_beams or 1], cfg.tune_length_penalties or [defaults.length_penalty]
        )
        decodings += [(len(raw[cfg.eval_split]), beams) for beams, _ in grid]
    if cfg.test_split:
        test_beams = max(cfg.tune_num_beams) if cfg.tunes_decoding and cfg.tune_num_beams else default_beams
        decodings.append((len(raw[cfg.test_split]), test_beams))
    return decodings


TIMED_SENTENCES = 128
"""Validation sentences translated at each validation of a time-budgeted run to time the work after training."""


class AfterTrainingTimer:
    """`timer(model) -> seconds`: the estimated duration of the translations after training
    (`after_training_decodings`), from the time `model` takes now to translate `TIMED_SENTENCES` validation sources
    spread over the split, with the largest of those beams, in its own weights as after training (about 1 s on
    Multi30k). Measured, not modelled: beam search's cost against greedy validation varies with the CPU and the
    precision (1.2-1.8x for beam 4-5 on an AVX-512 CPU under bf16 autocast, 2.5x in fp32 synthetic batches).

    `timer.before_training(model) -> (after training, final validation)` estimates the same before the model has
    learned anything, when its own outputs would run to the length limit: every output of the timed translation
    is held to the mean length of those sentences' references (`min_new_tokens` = `max_new_tokens`), which a
    trained model's outputs come close to, and this package's decoding loops let each sentence leave the batch when
    it is done, so the sum of the output lengths is what costs. It also times the validation's own decoding
    (`eval_num_beams` on the validation sentences), which a total budget keeps time for after training too.
    `benchmarks/bench_budget_estimate.py` compares both estimates with a trained model's real translations.
    """

    def __init__(self, cfg: TrainConfig, decodings: list[tuple[int, int]], tokenizer, raw: DatasetDict):
        split = raw[cfg.eval_split]
        every = max(len(split) // TIMED_SENTENCES, 1)
        self.sources = list(split["src"])[::every][:TIMED_SENTENCES]
        self.references = list(split["tgt"])[::every][:TIMED_SENTENCES] if "tgt" in split.column_names else None
        self.tokenizer = tokenizer
        self.beams = max(beams for _, beams in decodings)
        self.sentences = sum(count for count, _ in decodings)
        self.validation_beams = cfg.eval_num_beams
        self.validation_sentences = min(len(split), cfg.max_eval_samples or len(split))

    def __call__(self, model) -> float:
        return self.seconds_per_sentence(model, self.beams) * self.sentences

    def before_training(self, model) -> tuple[float, float]:
        """(seconds of the translations after training, seconds of the final validation's decoding), with outputs
        held to their references' mean length."""
        length = self.reference_length()
        after = self.seconds_per_sentence(model, self.beams, length) * self.sentences
        validation = self.seconds_per_sentence(model, self.validation_beams, length) * self.validation_sentences
        return after, validation

    def reference_length(self) -> int:
        """The mean length in tokens (`</s>` included) of the timed sentences' references."""
        if self.references is None:
            raise ValueError("the validation split has no references (a `tgt` column) to time decoding against")
        lengths = [len(ids) for ids in self.tokenizer(text_target=self.references).input_ids]
        return max(round(sum(lengths) / len(lengths)), 1)

    def seconds_per_sentence(self, model, beams: int, length: int | None = None) -> float:
        """Seconds a sentence that `model` takes to translate the timed sources with `beams`, its outputs held to
        `length` tokens if given."""
        from train.translate import translate

        forced = {} if length is None else {"min_new_tokens": length, "max_new_tokens": length}
        was_training = model.training
        model.eval()
        try:
            start = time.perf_counter()
            translate(model, self.tokenizer, self.sources, num_beams=beams, **forced)
            return (time.perf_counter() - start) / len(self.sources)
        finally:
            model.train(was_training)


def after_training_timer(cfg: TrainConfig, model, tokenizer, raw: DatasetDict) -> AfterTrainingTimer | None:
    """The timer of the translations after training (`AfterTrainingTimer`), or None when nothing is translated
    after training."""
    decodings = after_training_decodings(cfg, model, raw)
    return AfterTrainingTimer(cfg, decodings, tokenizer, raw) if decodings else None


AFTER_TRAINING_OVERHEAD_SECONDS = 30.0
"""Work after training besides translating (averaging checkpoints, loading the model, scoring, the card), kept free
before a deadline: about 7 s in the quick recipe and 27 s in a long run with its 10 decodings (their summaries'
`total_minutes - minutes_until_trained` less their translations' `translate_seconds`)."""


class TimeBudgetCallback(TrainerCallback):
    """Stops training after `minutes` of wall-clock time (measured from `on_train_begin`), and
    validates (if the run validates at all) and saves a checkpoint there, so that a run fits a time
    budget whatever the machine's speed and its last validation is of its final weights.

    At each validation it also estimates the work after training (the test translation, a decoding grid) with
    `estimate_after_training(model) -> seconds` (None: not estimated; `AfterTrainingTimer`). With
    `deadline` (a `time.time()` moment: the end of the whole run's budget, `TrainConfig.max_total_minutes`)
    training stops earlier when the time left before the deadline would no longer hold that work, the final
    validation and `AFTER_TRAINING_OVERHEAD_SECONDS`. Until the first validation measures them, the reserve comes
    from `estimate_before_training(model) -> (after training, final validation)`, called as training begins
    (`AfterTrainingTimer.before_training`): a machine already slow from the start (another job on its cores)
    stops training in time, instead of learning so at the first validation, too late.
    """

    def __init__(
        self,
        minutes: float,
        deadline: float | None = None,
        estimate_after_training: Callable[[Any], float] | None = None,
        estimate_before_training: Callable[[Any], tuple[float, float]] | None = None,
    ):
        self.seconds = minutes * 60
        self.deadline = deadline
        self.estimate_after_training = estimate_after_training
        self.estimate_before_training = estimate_before_training
        self.start: float | None = None
        self.eval_seconds: float | None = None
        self.after_training_seconds: float | None = None
        self.stopped_for_deadline = False

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.start = time.monotonic()
        if self.deadline is not None and self.estimate_before_training is not None and model is not None:
            self.after_training_seconds, self.eval_seconds = self.estimate_before_training(model)
            logger.info(
                "work after training estimated before it, with outputs of the references' length: translations "
                "%.0f s, final validation %.0f s (measured again at each validation)",
                self.after_training_seconds,
                self.eval_seconds,
            )

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
        if self.start is not None and _as_process_zero_decides(self.seconds_left() <= 0):
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


def _as_process_zero_decides(stop: bool) -> bool:
    """Under data parallelism (torchrun), every process stops at the step the first one chose: each measures its own
    clock, and a process that stopped one step before the others would leave them waiting for it in the next
    gradient all-reduce forever. Alone, `stop` as it is."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return stop
    on_gpu = torch.distributed.get_backend() == "nccl"  # NCCL moves GPU tensors only
    decision = torch.tensor([int(stop)], device=torch.cuda.current_device() if on_gpu else "cpu")
    torch.distributed.broadcast(decision, src=0)
    return bool(decision.item())


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

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.training_bar = tqdm(
                total=self.minutes, desc="training (time budget)", bar_format=self.BAR_FORMAT, dynamic_ncols=True
            )
        self.current_step = 0

    def on_step_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None:
            self.training_bar.n = self.budget.fraction_spent() * self.minutes
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
