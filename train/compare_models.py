"""The Transformer and the recurrent models it replaced, side by side: one table from finished runs.

    python -m train.compare_models transformer=runs/side-transformer rnn=runs/side-rnn \\
        rnnsearch=runs/side-rnnsearch --loss 3.0 --json results/side-by-side.json \\
        --figure docs/figures/side-by-side-length.png

Each run is a finished training run (`python -m train.train --config ...`, the same data, tokenizer,
batches and time budget for every model; only `model_type:` and the sizes differ). Read from its
folder, nothing is retrained or re-decoded:

- BLEU and chrF on the test split with their sacreBLEU signatures (`model/results.<split>.json`);
- parameters (`model/model.safetensors`);
- training minutes per epoch (`metrics.jsonl`'s `train_runtime` over the epochs trained);
- minutes until the validation loss first reached `--loss` (the runs' own validations; a step's
  minute is `step x training minutes / last step`, a constant step rate: validations are a few
  seconds each);
- decoding speed: test sentences per second of the final beam-search evaluation;
- BLEU by source-length bucket (source words, whitespace-separated): §4 of the paper argues that
  self-attention connects any two positions in one step where a recurrent network needs O(n), so long
  sentences should separate the models, the one without attention (a fixed-size summary of the source)
  most of all. The table reports what the runs show.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from safetensors import safe_open

from train.callbacks import read_metrics
from train.compare_baseline import training_minutes
from train.data import load_split

LENGTH_BUCKETS = ((1, 8), (9, 11), (12, 14), (15, 1000))
"""Source lengths in words: about the quartiles of Multi30k test2016 (280, 340, 231 and 149 sentences)."""


def parameter_count(model_dir: Path) -> int:
    """Parameters stored in `model.safetensors` (tied matrices are stored once, so counted once)."""
    with safe_open(str(model_dir / "model.safetensors"), framework="pt") as weights:
        total = 0
        for name in weights.keys():
            count = 1
            for size in weights.get_slice(name).get_shape():
                count *= size
            total += count
    return total


def minutes_to_loss(run_dir: Path, target: float) -> float | None:
    """Training minutes until a validation first had `eval_loss <= target` (None: never)."""
    rows = read_metrics(run_dir / "metrics.jsonl")
    minutes, _ = training_minutes(run_dir)
    last_step = max(row["step"] for row in rows)
    for row in sorted((r for r in rows if "eval_loss" in r), key=lambda r: r["step"]):
        if row["eval_loss"] <= target:
            return row["step"] * minutes / last_step
    return None


def bucket_of(source: str) -> tuple[int, int]:
    words = len(source.split())
    return next(bucket for bucket in LENGTH_BUCKETS if bucket[0] <= words <= bucket[1])


def bleu_by_length(sources: Sequence[str], hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, dict]:
    """sacreBLEU (13a, as the whole-corpus score) of each source-length bucket, with its sentence count."""
    from sacrebleu.metrics import BLEU

    if not len(sources) == len(hypotheses) == len(references):
        raise ValueError(f"{len(sources)} sources, {len(hypotheses)} hypotheses, {len(references)} references")
    buckets: dict[tuple[int, int], tuple[list[str], list[str]]] = {bucket: ([], []) for bucket in LENGTH_BUCKETS}
    for source, hypothesis, reference in zip(sources, hypotheses, references, strict=True):
        hyps, refs = buckets[bucket_of(source)]
        hyps.append(hypothesis)
        refs.append(reference)
    scores = {}
    for (low, high), (hyps, refs) in buckets.items():
        name = f"{low}-{high}" if high < 1000 else f"{low}+"
        scores[name] = {"sentences": len(hyps), "bleu": BLEU().corpus_score(hyps, [refs]).score if hyps else None}
    return scores


def describe_run(name: str, run_dir: Path, loss: float) -> dict[str, Any]:
    """One row of the table: what `run_dir` (a finished training run) measured."""
    config = json.loads((run_dir / "train_config.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    split = config["test_split"]
    model_dir = run_dir / "model"
    results = json.loads((model_dir / f"results.{split}.json").read_text())
    hypotheses = (model_dir / f"hyp.{split}.{config['tgt_lang']}").read_text(encoding="utf-8").split("\n")[:-1]
    test = load_split(config["dataset"], config["src_lang"], config["tgt_lang"], split, data_dir=config["data_dir"])
    minutes, _ = training_minutes(run_dir)
    model_config = json.loads((model_dir / "config.json").read_text())
    return {
        "name": name,
        "run_dir": str(run_dir),
        "model_type": model_config["model_type"],
        "parameters": parameter_count(model_dir),
        "test_split": split,
        "bleu": results["bleu"],
        "bleu_signature": results["bleu_signature"],
        "chrf": results["chrf"],
        "chrf_signature": results["chrf_signature"],
        "steps": summary["steps"],
        "epochs": summary["epochs"],
        "training_minutes": minutes,
        "minutes_per_epoch": minutes / summary["epochs"],
        "validation_loss_target": loss,
        "minutes_to_validation_loss": minutes_to_loss(run_dir, loss),
        "decoding": {
            "num_beams": results["num_beams"],
            "sentences_per_second": len(hypotheses) / results["translate_seconds"],
        },
        "bleu_by_source_length": bleu_by_length(test["src"], hypotheses, test["tgt"]),
        "precision": summary.get("precision"),
        "machine": summary.get("machine"),
        "seed": summary.get("seed"),
    }


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    buckets = list(rows[0]["bleu_by_source_length"])
    counts = ", ".join(f"{b}: {rows[0]['bleu_by_source_length'][b]['sentences']}" for b in buckets)
    loss = rows[0]["validation_loss_target"]
    lines = [
        f"| model | parameters | test BLEU | chrF | min/epoch | min to val loss {loss} | test sent/s (beam "
        f"{rows[0]['decoding']['num_beams']}) | " + " | ".join(f"BLEU, {b} words" for b in buckets) + " |",
        "|---|---|---|---|---|---|---|" + "---|" * len(buckets),
    ]
    for row in rows:
        reached = row["minutes_to_validation_loss"]
        by_length = " | ".join(
            "–" if row["bleu_by_source_length"][b]["bleu"] is None else f"{row['bleu_by_source_length'][b]['bleu']:.1f}"
            for b in buckets
        )
        lines.append(
            f"| {row['name']} (`{row['model_type']}`) | {row['parameters'] / 1e6:.1f}M | {row['bleu']:.1f} | "
            f"{row['chrf']:.1f} | {row['minutes_per_epoch']:.1f} | "
            f"{'not reached' if reached is None else f'{reached:.1f}'} | "
            f"{row['decoding']['sentences_per_second']:.0f} | {by_length} |"
        )
    lines.append(f"\nSentences per length bucket ({rows[0]['test_split']} split): {counts}.")
    return "\n".join(lines) + "\n"


def plot_bleu_by_length(rows: Sequence[dict[str, Any]], png: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    buckets = list(rows[0]["bleu_by_source_length"])
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(rows)
    for index, row in enumerate(rows):
        values = [row["bleu_by_source_length"][b]["bleu"] or 0.0 for b in buckets]
        ax.bar([i + index * width for i in range(len(buckets))], values, width, label=row["name"])
    ax.set_xticks([i + width * (len(rows) - 1) / 2 for i in range(len(buckets))], [f"{b} words" for b in buckets])
    ax.set_ylabel("test BLEU (sacreBLEU)")
    ax.set_title("BLEU by source length, same data, tokenizer and time budget")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="name=RUN_DIR of finished training runs")
    parser.add_argument("--loss", type=float, default=3.0, help="validation loss whose time to reach is reported")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--figure", type=Path)
    args = parser.parse_args(argv)
    rows = []
    for item in args.runs:
        name, sep, run_dir = item.partition("=")
        if not sep or not name or not run_dir:
            parser.error(f"expected name=RUN_DIR, got {item!r}")
        if not (Path(run_dir) / "summary.json").is_file():
            parser.error(f"{run_dir}: not a finished training run (no summary.json)")
        rows.append(describe_run(name, Path(run_dir), args.loss))
    print(markdown_table(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        command = " ".join(["python -m train.compare_models", *(sys.argv[1:] if argv is None else argv)])
        args.json.write_text(json.dumps({"command": command, "rows": rows}, indent=2) + "\n")
    if args.figure:
        print(f"wrote {plot_bleu_by_length(rows, args.figure)}")
    return rows


if __name__ == "__main__":
    main()
