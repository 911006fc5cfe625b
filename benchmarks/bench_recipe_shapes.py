"""How many training steps a time budget buys for each candidate shape and vocabulary of the quick recipe.

    python benchmarks/bench_recipe_shapes.py [--json benchmarks/results/recipe-shapes.json]

With a fixed time budget, a cheaper step is more steps: this times a training step (forward, backward,
Adam; bf16 autocast where the CPU has native bf16, else fp32; eager attention, as `train.train`
trains) on token-budget batches like the recipe's (1,000 tokens per side by default, sentences of 8-29
tokens), for each candidate, after 3 warm-up steps, and prints the steps 12 minutes would give. The
output layer is d_model x vocabulary, so a smaller BPE vocabulary makes every step cheaper. Real runs
fit fewer steps than this (validation, checkpoints, data loading): use the ratios between rows. The
exploration that chose the recipe's shape (`results/exploration/quick-recipe-shape.json`) trained
each candidate for the steps this predicts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import hf_vanilla_transformer as hvt  # noqa: E402
from benchmarks.bench_model import cpu_description  # noqa: E402
from benchmarks.bench_training_choices import token_budget_batches  # noqa: E402
from train.precision import choose_precision  # noqa: E402

D128X4 = {"d_model": 128, "encoder_ffn_dim": 256, "decoder_ffn_dim": 256, "encoder_layers": 4, "decoder_layers": 4}
CANDIDATES = [
    ("small", 8000, {}),
    ("small", 5000, {}),
    ("small", 3000, {}),
    ("d128 ffn256 4+4", 8000, D128X4),
    ("d128 ffn256 4+4", 5000, D128X4),
]


def seconds_per_step(vocab: int, overrides: dict, bf16: bool, budget: int, warmup: int = 3) -> tuple[float, int]:
    torch.manual_seed(0)
    config = hvt.VanillaTransformerConfig.small(vocab_size=vocab, dropout=0.0, attn_implementation="eager", **overrides)
    model = hvt.VanillaTransformerForConditionalGeneration(config).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    batches = token_budget_batches(n=12, budget=budget, vocab=vocab)

    def step(batch):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(**batch, label_smoothing=0.1).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for batch in batches[:warmup]:
        step(batch)
    start = time.perf_counter()
    for batch in batches:
        step(batch)
    return (time.perf_counter() - start) / len(batches), model.num_parameters()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--max-tokens", type=int, default=1000)
    args = parser.parse_args()
    precision = choose_precision("auto")
    machine = cpu_description() | {"torch": torch.__version__, "precision": precision}
    print(json.dumps(machine))
    rows = []
    for name, vocab, overrides in CANDIDATES:
        seconds, params = seconds_per_step(vocab, overrides, precision == "bf16", args.max_tokens)
        rows.append({"shape": name, "vocab_size": vocab, "parameters": params, "seconds_per_step": seconds})
    for row in rows:
        row["steps_in_12_minutes"] = int(720 / row["seconds_per_step"])
        row["steps_vs_first_row"] = rows[0]["seconds_per_step"] / row["seconds_per_step"]
        print(
            f"{row['shape']:16s} vocab {row['vocab_size']:5d}  {row['parameters'] / 1e6:4.1f}M params  "
            f"{row['seconds_per_step']:.3f} s/step  {row['steps_in_12_minutes']:5d} steps in 12 min  "
            f"{row['steps_vs_first_row']:.2f}x"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {"machine": machine, "command": " ".join(sys.argv), "max_tokens": args.max_tokens, "rows": rows}
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
