"""The plain Hugging Face baseline: what transformers' own tools reach in the recipe's time budget.

    python -m train.baseline --minutes 12 --output runs/baseline-marian     # Multi30k De->En
    python -m train.baseline --setting tatoeba-zh-en --minutes 12 --output runs/baseline-tatoeba-zh-en
    python -m train.baseline --config runs/compare/recipe/train_config.json --minutes 12.1   # a run's data and size

transformers' `MarianMTModel` of the recipe's size (its preset and `model:` overrides: d_model,
layers, heads, FFN; the same shared BPE of `vocab_size`, trained the same way on the same data),
trained as a Hugging Face user would by default: `Seq2SeqTrainer` with `group_by_length` batches of
64 sentences, AdamW 5e-4 with 500 warm-up steps and linear decay over 1,400 steps, label smoothing
0.1, Marian's dropout 0.1, fp32 (the Trainer's default) and SDPA attention. It stops after
`minutes` of training (`train.time_budget.TimeBudgetCallback`, measured from the start of training as
in the recipe), or at the end of its schedule if that comes first (`stopped_by` says which), and
is scored like the recipe: sacreBLEU and chrF on the recipe's test split, beam 4 (transformers'
length penalty 1.0, at most 100 new tokens). `python -m train.compare_baseline` runs it after the
recipe, for the same minutes, on the same machine.

Writes `<output>/results.<test split>.json` (scores with signatures, steps, epochs, minutes, seed,
machine and these settings) and `<output>/hyp.<test split>.<tgt>`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import DatasetDict
from transformers import (
    DataCollatorForSeq2Seq,
    MarianConfig,
    MarianMTModel,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    set_seed,
)

import hf_vanilla_transformer as hvt
from train.config import TrainConfig
from train.data import check_splits, load_corpus, tokenize_dataset
from train.evaluate import score, write_results
from train.lines import write_lines_atomic
from train.precision import machine_description
from train.time_budget import TimeBudgetCallback
from train.translate import translate

logger = logging.getLogger(__name__)

SIZE_FIELDS = (
    "d_model",
    "encoder_layers",
    "decoder_layers",
    "encoder_attention_heads",
    "decoder_attention_heads",
    "encoder_ffn_dim",
    "decoder_ffn_dim",
)
"""The architecture fields `VanillaTransformerConfig` and `MarianConfig` share (Marian/BART names)."""


@dataclass
class BaselineSettings:
    """The baseline's own training and decoding settings: transformers' usual choices, not the recipe's."""

    minutes: float = 12.0
    """Training time budget (wall clock from the start of training, as the recipe's `max_train_minutes`)."""
    sampling: str = "group_by_length"
    """`train_sampling_strategy` of the Trainer: `group_by_length` or `random`."""
    batch_size: int = 64
    learning_rate: float = 5e-4
    warmup_steps: int = 500
    max_steps: int = 1400
    """Length of the linear decay (the run stops earlier when the time budget ends)."""
    dropout: float = 0.1
    label_smoothing: float = 0.1
    seed: int = 1
    num_beams: int = 4
    max_new_tokens: int = 100
    num_threads: int | None = None
    output_dir: str = "runs/baseline-marian"

    def __post_init__(self):
        if self.sampling not in ("group_by_length", "random"):
            raise ValueError(f"sampling must be 'group_by_length' or 'random', got {self.sampling!r}")
        for name in ("batch_size", "max_steps", "num_beams", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.minutes <= 0:
            raise ValueError(f"minutes must be > 0, got {self.minutes}")


def recipe_sizes(cfg: TrainConfig) -> dict[str, int]:
    """The architecture of the recipe's model (`preset` + `model` overrides) in `SIZE_FIELDS`."""
    config = hvt.VanillaTransformerConfig.from_preset(cfg.preset, **cfg.model)
    return {name: getattr(config, name) for name in SIZE_FIELDS}


def marian_model(sizes: dict[str, int], tokenizer, dropout: float) -> MarianMTModel:
    """A randomly initialised `MarianMTModel` of `sizes` on `tokenizer`'s vocabulary (shared, tied
    embeddings scaled by sqrt(d_model), sinusoidal positions: Marian's defaults)."""
    return MarianMTModel(
        MarianConfig(
            **sizes,
            vocab_size=len(tokenizer),
            max_position_embeddings=512,
            dropout=dropout,
            scale_embedding=True,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            bos_token_id=tokenizer.bos_token_id,
            decoder_start_token_id=tokenizer.bos_token_id,
            forced_eos_token_id=None,
        )
    )


def train_baseline(
    cfg: TrainConfig, settings: BaselineSettings, *, sizes: dict[str, int] | None = None
) -> dict[str, Any]:
    """Train and score the baseline on `cfg`'s data (dataset, languages, splits, vocabulary size);
    `sizes` defaults to the recipe's (`recipe_sizes(cfg)`). Returns the results it writes."""
    out = Path(settings.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if settings.num_threads:
        import torch

        torch.set_num_threads(settings.num_threads)
    set_seed(settings.seed)
    start = time.perf_counter()
    raw = load_corpus(cfg.dataset, cfg.src_lang, cfg.tgt_lang, data_dir=cfg.data_dir)
    check_splits(raw, [cfg.train_split, cfg.test_split], cfg.dataset)
    train_text = raw[cfg.train_split]
    tokenizer = hvt.train_tokenizer(texts=list(train_text["src"]) + list(train_text["tgt"]), vocab_size=cfg.vocab_size)
    data = tokenize_dataset(DatasetDict({"train": train_text}), tokenizer, cache_dir=out / "cache")["train"]
    data = data.remove_columns([c for c in data.column_names if c not in ("input_ids", "attention_mask", "labels")])
    sizes = sizes or recipe_sizes(cfg)
    model = marian_model(sizes, tokenizer, settings.dropout)
    trainer = Seq2SeqTrainer(
        model=model,
        args=Seq2SeqTrainingArguments(
            output_dir=str(out),
            max_steps=settings.max_steps,
            per_device_train_batch_size=settings.batch_size,
            learning_rate=settings.learning_rate,
            warmup_steps=settings.warmup_steps,
            lr_scheduler_type="linear",
            label_smoothing_factor=settings.label_smoothing,
            train_sampling_strategy=settings.sampling,
            save_strategy="no",
            logging_steps=50,
            report_to="none",
            use_cpu=True,
            dataloader_pin_memory=False,
            seed=settings.seed,
        ),
        train_dataset=data,
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=model),
        processing_class=tokenizer,
        callbacks=[TimeBudgetCallback(settings.minutes)],
    )
    train_output = trainer.train()
    minutes_until_trained = (time.perf_counter() - start) / 60
    model.eval()
    test = raw[cfg.test_split]
    hypotheses = translate(
        model,
        tokenizer,
        test["src"],
        num_beams=settings.num_beams,
        length_penalty=1.0,
        max_new_tokens=settings.max_new_tokens,
    )
    steps = trainer.state.global_step
    results = {
        "model": f"MarianMTModel (transformers), {_describe(sizes)}, shared BPE {len(tokenizer)}",
        "dataset": cfg.dataset,
        "split": cfg.test_split,
        "language_pair": f"{cfg.src_lang}-{cfg.tgt_lang}",
        "settings": dataclasses.asdict(settings),
        "steps": steps,
        "epochs": trainer.state.epoch,
        "stopped_by": "max_steps" if steps >= settings.max_steps else "time budget",
        "training_minutes": train_output.metrics["train_runtime"] / 60,
        "minutes_until_trained": minutes_until_trained,
        "precision": "fp32 (the Trainer's default)",
        "decoding": f"beam {settings.num_beams}, transformers length penalty 1.0, at most {settings.max_new_tokens} "
        "new tokens",
        "seed": settings.seed,
        "machine": machine_description(),
        **score(hypotheses, test["tgt"], cfg.tgt_lang),
    }
    write_lines_atomic(out / f"hyp.{cfg.test_split}.{cfg.tgt_lang}", hypotheses)
    write_results(out / f"results.{cfg.test_split}.json", results)
    return results


def _describe(sizes: dict[str, int]) -> str:
    return (
        f"d_model {sizes['d_model']}, {sizes['encoder_layers']}+{sizes['decoder_layers']} layers, "
        f"{sizes['encoder_attention_heads']} heads, FFN {sizes['encoder_ffn_dim']}"
    )


def recipe_config(path: str | Path) -> TrainConfig:
    """A recipe's `TrainConfig` from its YAML file or a run's `train_config.json` (read as JSON: YAML
    would read `1e-09` as a string)."""
    if Path(path).suffix == ".json":
        return TrainConfig.from_dict(json.loads(Path(path).read_text(encoding="utf-8")), source=str(path))
    return TrainConfig.load(path)


def add_baseline_arguments(parser: argparse.ArgumentParser) -> None:
    """The baseline's settings as command-line options (shared with `train.compare_baseline`)."""
    defaults = BaselineSettings()
    parser.add_argument("--sampling", choices=["random", "group_by_length"], default=defaults.sampling)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--max-steps", type=int, default=defaults.max_steps, help="length of the linear decay")
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from train.recipe import SETTINGS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="quick", help="the recipe setting whose data")
    parser.add_argument(
        "--config", default=None, help="instead of --setting: a recipe run's train_config.json (or a YAML config)"
    )
    parser.add_argument("--minutes", type=float, default=BaselineSettings.minutes, help="training time budget")
    parser.add_argument("--seed", type=int, default=BaselineSettings.seed)
    parser.add_argument("--output", default=BaselineSettings.output_dir)
    add_baseline_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    settings = BaselineSettings(
        minutes=args.minutes,
        sampling=args.sampling,
        batch_size=args.batch_size,
        max_steps=args.max_steps,
        learning_rate=args.learning_rate,
        seed=args.seed,
        output_dir=args.output,
    )
    results = train_baseline(recipe_config(args.config or SETTINGS[args.setting]), settings)
    keys = ("steps", "epochs", "stopped_by", "training_minutes", "bleu", "chrf")
    print(json.dumps({key: results[key] for key in keys}))
    return results


if __name__ == "__main__":
    main()
