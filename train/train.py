"""Train a translation model with the paper's recipe (§5) using transformers' Seq2SeqTrainer.

    python -m train.train --config train/configs/multi30k_de_en.yaml
    python -m train.train --config train/configs/multi30k_de_en.yaml max_steps=200 output_dir=runs/try
    python -m train.train --config ... --resume            # continue an interrupted run
    torchrun --nproc_per_node 2 -m train.train --config ... # several processes (DDP)

What a run does, and where it writes (`output_dir`):

1. loads the parallel data once (`train.data.load_corpus`), stopping with a clear error on bad
   files or on a split name (train, validation or test) that the data do not have;
2. trains a shared BPE tokenizer on the training text, or loads `tokenizer` / `init_from`'s
   (`tokenizer/`), and tokenises with `datasets.map` (cached under `cache/`); with `bpe_dropout` the
   training pairs are segmented anew in every epoch (`train.bpe_dropout`);
3. builds the model from a preset plus overrides, or loads `init_from` to fine-tune (checked, and
   only regularisation may be overridden: `train.config.FINE_TUNING_OVERRIDES`);
4. trains with Adam (beta2 0.98, eps 1e-9), the inverse-square-root schedule with warmup (§5.3,
   `train.schedule`), label smoothing (§5.4) and token-budget batches (`train.batching`),
   validating loss and BLEU of generated translations every `eval_steps` and when it stops
   (`checkpoint-*/`, `metrics.jsonl`); with `max_train_minutes` it stops on time, and the progress
   bar counts minutes of the budget;
5. averages the last `average_last` checkpoints (§6.1) into `model/`, the final model (replaced
   only once the new one is complete); with `ema_decay`, the run also kept an average of its weights
   over the steps (`train.ema`), and `final_weights` says which of the two becomes `model/`;
6. loads `model/` once and evaluates it on the test split with the model's decoding settings
   (`model/results.<split>.json`, `model/hyp.<split>.<lang>`), draws `training_curves.png`, and
   writes the model card `model/README.md`.

Interruptions: `--resume` continues from the last complete checkpoint (one whose
`trainer_state.json`, written last, parses; incomplete ones are renamed `incomplete-checkpoint-N`)
and reaches the same weights as an uninterrupted run; a run that had already reached `max_steps`
is only finished (steps 5-6). A last line of `metrics.jsonl` cut short is dropped with a warning.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import DatasetDict
from transformers import (
    DataCollatorForSeq2Seq,
    EarlyStoppingCallback,
    Seq2SeqTrainingArguments,
    set_seed,
)
from transformers.trainer_callback import ProgressCallback, TrainerState
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

import hf_vanilla_transformer as hvt
from train.allocator import keep_freed_memory
from train.average_checkpoints import average_checkpoints, last_checkpoints
from train.batching import padding_stats
from train.bpe_dropout import BpeDropout
from train.callbacks import KeepLastCheckpointsCallback, MetricsLogCallback, plot_metrics
from train.config import TrainConfig, model_class, model_config_class
from train.data import (
    check_splits,
    example_lengths,
    filter_by_length,
    load_corpus,
    lowercased_tokenized_scoring,
    tokenize_dataset,
)
from train.decoding_check import DecodingCheckCallback
from train.ema import EmaCallback, choose_final_weights
from train.evaluate import score
from train.init_embeddings import WORD2VEC, init_embeddings_from_file, vectors_file, word2vec_for_run
from train.lines import write_text_atomic
from train.model_folder import load_checked_model, load_model, load_tokenizer
from train.onednn_cache import make_room_for_batch_shapes
from train.precision import choose_precision, machine_description
from train.schedule import LR_SCHEDULER_TYPE, cooldown_factor, peak_learning_rate
from train.time_budget import TimeBudgetCallback, TimeBudgetProgressCallback, after_training_timer, run_deadline
from train.trainer import TokenBudgetSeq2SeqTrainer

logger = logging.getLogger("train")

EXAMPLES = 5
"""Test translations shown at the end of a run (`summary["examples"]`)."""


# ---------------------------------------------------------------------------- data and tokenizer
def build_tokenizer(cfg: TrainConfig, raw: DatasetDict, output_dir: Path):
    """Reuse the run's tokenizer if it exists (resume), else load `tokenizer` / `init_from`'s, else
    train the shared BPE on source and target training text together (§5.1)."""
    saved = output_dir / "tokenizer"
    source = saved if (saved / "tokenizer.json").is_file() else cfg.tokenizer or cfg.init_from
    if source is not None:
        return load_tokenizer(source)
    train = raw[cfg.train_split]
    logger.info("training a shared BPE vocabulary of %d on %d sentence pairs", cfg.vocab_size, len(train))
    tokenizer = hvt.train_tokenizer(texts=list(train["src"]) + list(train["tgt"]), vocab_size=cfg.vocab_size)
    tokenizer.save_pretrained(saved)
    return tokenizer


def prepare_datasets(cfg: TrainConfig, raw: DatasetDict, tokenizer, output_dir: Path):
    """Tokenised training and validation sets; training pairs over the length limits are dropped."""
    eval_raw = raw[cfg.eval_split]
    if cfg.max_eval_samples is not None:
        eval_raw = eval_raw.select(range(min(cfg.max_eval_samples, len(eval_raw))))
    subset = DatasetDict({"train": raw[cfg.train_split], "validation": eval_raw})
    tokenized = tokenize_dataset(subset, tokenizer, cache_dir=output_dir / "cache")
    train, dropped = filter_by_length(tokenized["train"], cfg.max_source_length, cfg.max_target_length)
    return train, tokenized["validation"], dropped


def bpe_dropout(cfg: TrainConfig, tokenizer) -> BpeDropout | None:
    """The run's BPE-dropout on training pairs (`cfg.bpe_dropout`), within its length limits; None at 0."""
    if not cfg.bpe_dropout:
        return None
    return BpeDropout(
        tokenizer, cfg.bpe_dropout, max_source_length=cfg.max_source_length, max_target_length=cfg.max_target_length
    )


# ---------------------------------------------------------------------------- model
TRAINING_ATTENTION = {"bf16": "eager", "fp32": "sdpa"}
"""Attention kernel for training on a CPU, by precision. Under bf16 autocast torch's SDPA backward is
slow on CPUs: on the recipe's token-budget batches (small preset) eager attention trained 1.90x faster
than SDPA in fp32, SDPA under bf16 only 1.28x; in fp32 the two are within noise (0.93-1.04x).
`python benchmarks/bench_training_choices.py`, results in `benchmarks/results/training-choices.json`.
Both give the same numbers (`test_eager_equals_sdpa`); a saved model loads with SDPA."""


def build_model(cfg: TrainConfig, tokenizer, precision: str = "fp32"):
    """A new model from `preset` + `model` overrides (its embedding from `init_embeddings` word vectors if
    set), or the `init_from` model to fine-tune, with the attention kernel that trains fastest at
    `precision` on a CPU (`TRAINING_ATTENTION`; the recurrent models have no attention kernel to choose)."""
    model = _new_or_loaded_model(cfg, tokenizer)
    vectors = vectors_file(cfg.init_embeddings, cfg.output_dir)
    if vectors is not None:  # here, before training: a file that does not fit stops the run at once
        init_embeddings_from_file(model, vectors, tokenizer)
    if not torch.cuda.is_available() and model.config.model_type == hvt.VanillaTransformerConfig.model_type:
        model.set_attn_implementation(TRAINING_ATTENTION[precision])
    return model


def embedding_width(cfg: TrainConfig) -> int:
    """The embedding size of the model `cfg` builds (`d_model`), before building it."""
    config = model_config_class(cfg.model_type).from_preset(cfg.preset, **cfg.model)
    return getattr(config, "d_model", None) or config.embedding_size


def model_width(config) -> int:
    """The width in §5.3's learning rate `d_model^-0.5 * ...`: `d_model`, or a recurrent model's `hidden_size`."""
    return getattr(config, "d_model", None) or config.hidden_size


def _new_or_loaded_model(cfg: TrainConfig, tokenizer):
    """A new model from `preset` + `model` overrides, or the `init_from` model to fine-tune (checked:
    its weights must match its config; only `FINE_TUNING_OVERRIDES` may be changed)."""
    cfg.check_values()
    if cfg.init_from:
        # Given to from_pretrained, so that the layers are built with them (set afterwards, they would
        # reach the config but not the modules).
        model = load_checked_model(cfg.init_from, **cfg.model)
        expected = model_config_class(cfg.model_type).model_type
        if model.config.model_type != expected:
            raise ValueError(
                f"init_from={cfg.init_from} is a {model.config.model_type} model, but model_type is {cfg.model_type} "
                f"({expected}): set model_type to the folder's"
            )
        return model
    return model_class(cfg.model_type)(
        model_config_class(cfg.model_type).from_preset(
            cfg.preset,
            vocab_size=len(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            decoder_start_token_id=tokenizer.bos_token_id,
            **cfg.model,
        )
    )


def cooldown_multiplier(cfg: TrainConfig, time_budget: TimeBudgetCallback | None) -> Callable[[int], float] | None:
    """`step -> factor` of the cool-down (`cfg.cooldown_fraction`): over the last fraction of the time
    budget when there is one, else of `max_steps`. None without a cool-down."""
    if not cfg.cooldown_fraction:
        return None
    if time_budget is not None:
        return lambda step: cooldown_factor(time_budget.fraction_spent(), cfg.cooldown_fraction)
    return lambda step: cooldown_factor(step / cfg.max_steps, cfg.cooldown_fraction)


def training_arguments(cfg: TrainConfig, d_model: int, precision: str = "fp32") -> Seq2SeqTrainingArguments:
    """The paper's optimiser and schedule (§5.3) through Trainer settings: Adam (AdamW without
    weight decay) and transformers' `inverse_sqrt` schedule, §5.3's formula one update late (see
    `train.schedule`). `precision="bf16"` is the Trainer's bf16 autocast with fp32 weights."""
    tracks_best = cfg.early_stopping_patience is not None  # EarlyStoppingCallback needs a best metric
    return Seq2SeqTrainingArguments(
        bf16=precision == "bf16",
        output_dir=cfg.output_dir,
        max_steps=cfg.max_steps,
        learning_rate=peak_learning_rate(d_model, cfg.warmup_steps, cfg.lr_factor),
        lr_scheduler_type=LR_SCHEDULER_TYPE,
        warmup_steps=cfg.warmup_steps,
        adam_beta1=cfg.adam_beta1,
        adam_beta2=cfg.adam_beta2,
        adam_epsilon=cfg.adam_epsilon,
        weight_decay=0.0,
        max_grad_norm=cfg.max_grad_norm or 0.0,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        per_device_train_batch_size=1,  # unused: batches come from the token budget
        per_device_eval_batch_size=128,
        eval_strategy="steps",
        eval_steps=cfg.eval_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        # The Trainer keeps its best checkpoint outside the rotation, so with a best metric the last
        # `average_last` checkpoints need one more place; without early stopping no best is tracked (a kept
        # best checkpoint would otherwise take the place of one of the last, and averaging would mix in
        # weights from thousands of steps earlier).
        save_total_limit=max(cfg.keep_checkpoints, cfg.average_last) + (1 if tracks_best else 0),
        metric_for_best_model="bleu" if tracks_best else None,
        greater_is_better=True if tracks_best else None,
        load_best_model_at_end=tracks_best,
        predict_with_generate=True,
        generation_num_beams=cfg.eval_num_beams,
        label_smoothing_factor=0.0,  # the model's own loss smooths (TokenBudgetSeq2SeqTrainer.label_smoothing)
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        seed=cfg.seed,
        report_to=cfg.report_to,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        # Without a GPU, say so: only then does the Trainer pick up torchrun's processes (gloo).
        use_cpu=not torch.cuda.is_available(),
        ddp_backend="gloo" if not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
        ddp_find_unused_parameters=False,
        push_to_hub=False,
    )


def best_validation_bleu(log_history: list[dict]) -> float | None:
    """The highest validation BLEU a run logged (None before its first validation)."""
    scores = [row["eval_bleu"] for row in log_history if "eval_bleu" in row]
    return max(scores, default=None)


def bleu_metric(tokenizer, tgt_lang: str):
    """`compute_metrics` for Seq2SeqTrainer: sacreBLEU and chrF of generated validation output."""

    def compute(eval_pred) -> dict[str, float]:
        predictions, labels = eval_pred
        predictions = np.where(predictions != -100, predictions, tokenizer.pad_token_id)
        labels = np.where(labels != -100, labels, tokenizer.pad_token_id)
        hypotheses = tokenizer.batch_decode(predictions, skip_special_tokens=True)
        references = tokenizer.batch_decode(labels, skip_special_tokens=True)
        result = score(hypotheses, references, tgt_lang)
        return {"bleu": result["bleu"], "chrf": result["chrf"]}

    return compute


# ---------------------------------------------------------------------------- the run
def checkpoint_dirs(output_dir: Path) -> list[Path]:
    """The `checkpoint-N` folders of a run, by increasing N."""
    return sorted(
        (p for p in output_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*") if p.name.split("-")[-1].isdigit()),
        key=lambda p: int(p.name.split("-")[-1]),
    )


def last_complete_checkpoint(output_dir: Path) -> Path | None:
    """The newest `checkpoint-N` that is complete: its `trainer_state.json`, which the Trainer writes
    last, exists and parses.

    A run killed (or out of disk space) while writing a checkpoint leaves it incomplete; such folders
    are renamed to `incomplete-checkpoint-N` (kept for inspection, never resumed from, and out of
    the way of the resumed run's own `checkpoint-N`), and the one before is used."""
    checkpoints = checkpoint_dirs(output_dir)
    while checkpoints and not _trainer_state_readable(checkpoints[-1]):
        partial = checkpoints.pop()
        target = partial.with_name(f"incomplete-{partial.name}")
        for attempt in range(1, 1000):
            if not target.exists():
                break
            target = partial.with_name(f"incomplete-{partial.name}.{attempt}")
        logger.warning("%s is incomplete (no readable trainer_state.json); renamed to %s", partial, target.name)
        partial.rename(target)
    return checkpoints[-1] if checkpoints else None


def _trainer_state_readable(checkpoint: Path) -> bool:
    try:
        return isinstance(json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8")), dict)
    except (OSError, UnicodeDecodeError, ValueError):
        return False


def train(cfg: TrainConfig, resume: bool = False) -> dict[str, Any]:
    """Run steps 1-6 of the module docstring; returns a summary with paths and metrics."""
    keep_freed_memory()  # glibc: no page faults for every step's tensors (train/allocator.py)
    make_room_for_batch_shapes()  # oneDNN: each batch shape's kernels compiled once (train/onednn_cache.py)
    output_dir = Path(cfg.output_dir)
    deadline = run_deadline(cfg)
    existing = last_complete_checkpoint(output_dir) if output_dir.is_dir() else None
    if existing and not resume:
        raise FileExistsError(
            f"{output_dir} already holds checkpoints: pass --resume to continue that run, or choose another output_dir"
        )
    output_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(output_dir / "train_config.json", json.dumps(cfg.to_dict(), indent=2))
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    set_seed(cfg.seed)
    start = time.perf_counter()

    raw = load_corpus(cfg.dataset, cfg.src_lang, cfg.tgt_lang, data_dir=cfg.data_dir)
    check_splits(raw, [cfg.train_split, cfg.eval_split, cfg.test_split], cfg.dataset)  # before any training
    tokenizer = build_tokenizer(cfg, raw, output_dir)
    train_ds, eval_ds, dropped = prepare_datasets(cfg, raw, tokenizer, output_dir)
    logger.info(
        "training pairs: %d (dropped %d longer than %d/%d tokens); validation pairs: %d",
        len(train_ds),
        dropped,
        cfg.max_source_length,
        cfg.max_target_length,
        len(eval_ds),
    )
    precision = choose_precision(cfg.precision)
    if cfg.init_embeddings == WORD2VEC:
        texts = list(raw[cfg.train_split]["src"]) + list(raw[cfg.train_split]["tgt"])
        corpus = f"{cfg.dataset} {cfg.train_split} {cfg.src_lang}+{cfg.tgt_lang}"
        word2vec_for_run(output_dir, tokenizer, texts, embedding_width(cfg), cfg.seed, corpus)
    model = build_model(cfg, tokenizer, precision)
    logger.info(
        "model: %s, %.1fM parameters",
        cfg.init_from or f"{cfg.preset} preset" + (f" with {cfg.model}" if cfg.model else ""),
        sum(p.numel() for p in model.parameters()) / 1e6,
    )

    callbacks = [
        MetricsLogCallback(output_dir / "metrics.jsonl"),
        # transformers 5.24 once made cached decoding ignore its cache: catch that at the first validation.
        DecodingCheckCallback(eval_ds["input_ids"][:8], tokenizer.pad_token_id),
        KeepLastCheckpointsCallback(),
    ]
    time_budget = None
    if cfg.max_train_minutes is not None:
        timer = after_training_timer(cfg, model, tokenizer, raw)  # the callback uses it only with a deadline
        time_budget = TimeBudgetCallback(
            cfg.max_train_minutes, deadline, timer, timer.before_training if timer is not None else None
        )
        callbacks.append(time_budget)
    if cfg.ema_decay is not None:
        callbacks.append(EmaCallback(cfg.ema_decay))
    if cfg.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience))
    trainer = TokenBudgetSeq2SeqTrainer(
        model=model,
        args=training_arguments(cfg, model_width(model.config), precision),
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100),
        compute_metrics=bleu_metric(tokenizer, cfg.tgt_lang),
        callbacks=callbacks,
        max_tokens=cfg.max_tokens,
        label_smoothing=cfg.label_smoothing,
        lr_multiplier=cooldown_multiplier(cfg, time_budget),
        bpe_dropout=bpe_dropout(cfg, tokenizer),
    )
    if time_budget is not None and trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(TimeBudgetProgressCallback(time_budget))
    stats = padding_stats(trainer.make_batch_sampler(train_ds).global_batches(), *example_lengths(train_ds))
    logger.info(
        "token-budget batches: %d per epoch, %.1f pairs on average, padding %.1f%% (random batches of "
        "that size: %.1f%%)",
        stats.num_batches,
        stats.mean_batch_size,
        100 * stats.pad_fraction,
        100 * stats.random_pad_fraction,
    )
    finished = TrainerState.load_from_json(str(existing / "trainer_state.json")) if resume and existing else None
    if finished is not None and finished.global_step >= cfg.max_steps:
        # Training had ended (a later step failed): the Trainer would train one step past max_steps.
        logger.info("%s is the last step (max_steps=%d): finishing the run without training", existing, cfg.max_steps)
        trainer.state = finished
        callbacks[0].keep_until(finished.global_step)  # as on_train_begin would
    else:
        if resume and existing:
            logger.info("resuming from %s", existing)
        trainer.train(resume_from_checkpoint=str(existing) if resume and existing else None)
    summary: dict[str, Any] = {
        "output_dir": str(output_dir),
        "train_pairs": len(train_ds),
        "dropped_pairs": dropped,
        "batches_per_epoch": stats.num_batches,
        "padding_fraction": stats.pad_fraction,
        "random_batching_padding_fraction": stats.random_pad_fraction,
        "steps": trainer.state.global_step,
        "epochs": trainer.state.epoch,
        "best_validation_bleu": best_validation_bleu(trainer.state.log_history),
        "minutes_until_trained": (time.perf_counter() - start) / 60,
        "training_cut_by_max_total_minutes": time_budget is not None and time_budget.stopped_for_deadline,
        "precision": precision,
        "seed": cfg.seed,
        "machine": machine_description(),
    }
    if trainer.is_world_process_zero():
        summary.update(finish(cfg, trainer, output_dir, raw))
        summary["total_minutes"] = (time.perf_counter() - start) / 60
        write_text_atomic(output_dir / "summary.json", json.dumps(summary, indent=2, default=str))
    return summary


def finish(cfg: TrainConfig, trainer: TokenBudgetSeq2SeqTrainer, output_dir: Path, raw: DatasetDict) -> dict[str, Any]:
    """Average checkpoints (§6.1) into `model/`, choose the decoding on validation (if `cfg` asks), evaluate
    the model on the test split of `raw` (the corpus loaded at the start), plot, write the model card. The
    final model is loaded once, from disk."""
    from train.model_card import write_model_card

    model_dir = output_dir / "model"
    averaged = save_final_model(cfg, trainer, output_dir, model_dir)
    logger.info("final model: %s (average of %s)", model_dir, averaged or "no checkpoints: last weights")
    results: dict[str, Any] = {"model_dir": str(model_dir), "averaged_checkpoints": averaged}
    if cfg.ema_decay is not None:
        results["final_weights"] = choose_final_weights(
            cfg.final_weights,
            output_dir,
            trainer.state.global_step,
            lambda folder, name: validation_bleu(cfg, folder, raw, name),
        )
    model, evaluation = evaluate_final_model(cfg, output_dir, raw)
    results.update(evaluation)
    if (output_dir / "metrics.jsonl").is_file():
        results["plot"] = str(plot_metrics(output_dir / "metrics.jsonl", output_dir / "training_curves.png"))
    write_model_card(
        cfg, model, model_dir, results.get("test"), trainer.state, final_weights=results.get("final_weights")
    )
    if cfg.push_to_hub:
        from train.hub import push_model_folder

        results["pushed_to"] = push_model_folder(model_dir, cfg.push_to_hub)
    return results


def validation_bleu(cfg: TrainConfig, model_dir: Path, raw: DatasetDict, name: str) -> float:
    """BLEU of the model folder `model_dir` on `cfg.eval_split` (all of it), decoded as the test split will be
    unless the run tunes its decoding afterwards (`test_num_beams` / `length_penalty`, else the model's generation
    config: §6.1's beam 4, α 0.6); hypotheses and results in `<run>/final-weights/<name>/`."""
    from train.tune_decoding import tune_decoding

    model, tokenizer = load_model(model_dir)
    defaults = model.generation_config
    tuning = tune_decoding(
        model,
        tokenizer,
        raw[cfg.eval_split],
        split=cfg.eval_split,
        tgt_lang=cfg.tgt_lang,
        num_beams=[cfg.test_num_beams or defaults.num_beams or 1],
        length_penalties=[cfg.length_penalty if cfg.length_penalty is not None else defaults.length_penalty],
        output_dir=Path(cfg.output_dir) / "final-weights" / name,
    )
    return tuning["grid"][0]["bleu"]


def evaluate_final_model(cfg: TrainConfig, output_dir: Path, raw: DatasetDict) -> tuple[Any, dict[str, Any]]:
    """The run's final model (`output_dir/model`), loaded; and its evaluation: with `cfg.tune_num_beams` /
    `cfg.tune_length_penalties`, the beam and length penalty chosen on `cfg.eval_split` and written into
    the model's `generation_config.json` (`decoding_tuning`, `train.tune_decoding`); then the test split
    scored with the model's decoding, or `cfg.test_num_beams` / `cfg.length_penalty` (`test`, `examples`)."""
    from train.evaluate_model import evaluate_translations
    from train.tune_decoding import apply_decoding, tune_decoding

    model_dir = output_dir / "model"
    model, tokenizer = load_model(model_dir)
    results: dict[str, Any] = {}
    if cfg.tunes_decoding:
        defaults = model.generation_config
        tuning = tune_decoding(
            model,
            tokenizer,
            raw[cfg.eval_split],
            split=cfg.eval_split,
            tgt_lang=cfg.tgt_lang,
            num_beams=cfg.tune_num_beams or [defaults.num_beams],
            length_penalties=cfg.tune_length_penalties or [defaults.length_penalty],
            output_dir=output_dir / "decoding-tuning",
        )
        apply_decoding(model, model_dir, tuning["best"])
        logger.info("decoding chosen on %s: %s", cfg.eval_split, tuning["best"])
        results["decoding_tuning"] = tuning
    if cfg.test_split:
        test_data = raw[cfg.test_split]
        test, hypotheses = evaluate_translations(
            model,
            tokenizer,
            test_data,
            output_dir=model_dir,
            meta={
                "model": str(model_dir),
                "dataset": cfg.dataset,
                "split": cfg.test_split,
                "language_pair": f"{cfg.src_lang}-{cfg.tgt_lang}",
            },
            tgt_lang=cfg.tgt_lang,
            tokenized_refs=lowercased_tokenized_scoring(cfg.dataset, cfg.test_split, cfg.tgt_lang, cfg.data_dir),
            num_beams=cfg.test_num_beams,
            length_penalty=cfg.length_penalty,
        )
        results["test"] = test
        results["examples"] = [
            {"source": source, "translation": translation, "reference": reference}
            for source, translation, reference in zip(
                test_data["src"][:EXAMPLES], hypotheses[:EXAMPLES], test_data["tgt"][:EXAMPLES], strict=True
            )
        ]
        logger.info("test BLEU %.2f chrF %.2f (%s)", test["bleu"], test["chrf"], test["bleu_signature"])
    return model, results


RESCORE_SETTINGS = ("tune_num_beams", "tune_length_penalties", "test_num_beams", "length_penalty", "num_threads")
"""The settings `rescore` may change against the run's saved config: decoding, and threads."""


def rescore(cfg: TrainConfig) -> dict[str, Any]:
    """Evaluate a finished run again with `cfg`'s decoding settings (tuning on validation, test), without
    training: the run's `summary.json`, `train_config.json`, test results and model card are updated, each
    file replaced whole. `cfg` must be the run's config up to `RESCORE_SETTINGS`. Returns the summary."""
    from train.model_card import rewrite_model_card

    output_dir = Path(cfg.output_dir)
    missing = [name for name in ("train_config.json", "summary.json", "model") if not (output_dir / name).exists()]
    if missing:
        raise FileNotFoundError(f"{output_dir} is not a finished run ({', '.join(missing)} missing): train it first")
    saved = TrainConfig.from_dict(json.loads((output_dir / "train_config.json").read_text(encoding="utf-8")))
    changed = sorted(
        key
        for key, value in cfg.to_dict().items()
        if key not in (*RESCORE_SETTINGS, "output_dir") and saved.to_dict()[key] != value  # the run may have moved
    )
    if changed:
        raise ValueError(
            f"{output_dir} was trained with other settings than these: {', '.join(changed)} differ; rescoring "
            f"changes only the decoding ({', '.join(RESCORE_SETTINGS)})"
        )
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    start = time.perf_counter()
    summary = json.loads((output_dir / "summary.json").read_text(encoding="utf-8"))
    raw = load_corpus(cfg.dataset, cfg.src_lang, cfg.tgt_lang, data_dir=cfg.data_dir)
    check_splits(raw, [cfg.eval_split, cfg.test_split], cfg.dataset)
    _, evaluation = evaluate_final_model(cfg, output_dir, raw)
    summary.pop("decoding_tuning", None)
    summary.update(evaluation, rescore_minutes=(time.perf_counter() - start) / 60)
    write_text_atomic(output_dir / "train_config.json", json.dumps(cfg.to_dict(), indent=2))
    write_text_atomic(output_dir / "summary.json", json.dumps(summary, indent=2, default=str))
    rewrite_model_card(output_dir)
    return summary


def save_final_model(
    cfg: TrainConfig, trainer: TokenBudgetSeq2SeqTrainer, output_dir: Path, model_dir: Path
) -> list[str]:
    """Write `model_dir`: the average of the last `average_last` checkpoints when the last one is
    the final step (`last_checkpoints`: fewer if fewer exist, with a warning), else the final weights. The folder is
    replaced only once the new one is complete. Returns the names of the averaged checkpoints."""
    checkpoints = last_checkpoints(output_dir, cfg.average_last) if checkpoint_dirs(output_dir) else []
    if checkpoints and checkpoints[-1].name == f"{PREFIX_CHECKPOINT_DIR}-{trainer.state.global_step}":
        average_checkpoints(checkpoints, model_dir, overwrite=True)
        return [c.name for c in checkpoints]
    staging = Path(tempfile.mkdtemp(prefix=f".{model_dir.name}.", dir=output_dir))
    try:
        trainer.save_model(str(staging))
        if model_dir.exists():
            retired = staging.with_name(staging.name + ".old")
            model_dir.rename(retired)
            staging.rename(model_dir)
            shutil.rmtree(retired)
        else:
            staging.rename(model_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return []


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML file of TrainConfig settings (see train/configs/)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in output_dir")
    parser.add_argument("overrides", nargs="*", help="key=value settings overriding the YAML (model.x=y for model)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = TrainConfig.load(args.config, args.overrides)
    summary = train(cfg, resume=args.resume)
    print(json.dumps({k: v for k, v in summary.items() if k != "test"}, indent=2, default=str))
    return summary


if __name__ == "__main__":
    main()
