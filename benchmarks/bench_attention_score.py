"""What a training step costs with each attention score (`attention_score`, §3.2.1), on the recipe's batches.

    python benchmarks/bench_attention_score.py [--steps 8] [--json benchmarks/results/attention-score-step-time.json]

The paper chose dot products because they are "much faster and more space-efficient in practice" than
additive scores. This times training steps of the small preset (vocab 8000, dropout 0) on the token-budget
batches of `bench_training_choices.py` (1,000 tokens, T from 8-29), at the precision and attention kernel
the recipe trains with on this machine (`train.precision`, `train.train.TRAINING_ATTENTION`; additive scores
always run eager). The three models step in turn on each batch, so a shared CPU's load hits them alike;
the ratios to the paper's score are what carries over, not the seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import hf_vanilla_transformer as hvt  # noqa: E402
from benchmarks.bench_training_choices import VOCAB, token_budget_batches  # noqa: E402
from train.precision import choose_precision, machine_description  # noqa: E402
from train.train import TRAINING_ATTENTION  # noqa: E402

SCORES = ("scaled_dot_product", "dot_product", "additive")


def training_step(score: str, precision: str):
    """A function doing one Adam step of a fresh small model with `score` on a batch; returns it and the model."""
    torch.manual_seed(0)
    config = hvt.VanillaTransformerConfig.small(vocab_size=VOCAB, dropout=0.0, attention_score=score)
    model = hvt.VanillaTransformerForConditionalGeneration(config).train()
    model.set_attn_implementation(TRAINING_ATTENTION[precision])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step(batch: dict) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = model(**batch, label_smoothing=0.1).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per score (after 2 warm-up steps)")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    precision = choose_precision(args.precision)
    batches = token_budget_batches(n=args.steps + 2)
    steps, kernels, parameters = {}, {}, {}
    for score in SCORES:
        steps[score], model = training_step(score, precision)
        kernels[score] = model.config._attn_implementation
        parameters[score] = sum(p.numel() for p in model.parameters())
    seconds: dict[str, list[float]] = {score: [] for score in SCORES}
    for index, batch in enumerate(batches):
        for score in SCORES:
            start = time.perf_counter()
            steps[score](batch)
            if index >= 2:  # warm-up
                seconds[score].append(time.perf_counter() - start)
    paper = statistics.median(seconds["scaled_dot_product"])
    rows = [
        {
            "attention_score": score,
            "attention_kernel": kernels[score],
            "parameters": parameters[score],
            "median_seconds_per_step": statistics.median(seconds[score]),
            "ratio_to_scaled_dot_product": statistics.median(seconds[score]) / paper,
            "seconds": seconds[score],
        }
        for score in SCORES
    ]
    for row in rows:
        print(
            f"{row['attention_score']:>18} ({row['attention_kernel']}, {row['parameters'] / 1e6:.2f}M parameters): "
            f"{row['median_seconds_per_step']:.3f} s/step, {row['ratio_to_scaled_dot_product']:.2f}x"
        )
    if args.json:
        result = {
            "command": "python " + " ".join(sys.argv),
            "preset": "small",
            "precision": precision,
            "batches": "token budget 1000, T in 8-29 (bench_training_choices.token_budget_batches)",
            "timed_steps": args.steps,
            "machine": machine_description(),
            "load_average_1_5_15_min_after": os.getloadavg(),
            "torch": torch.__version__,
            "rows": rows,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
