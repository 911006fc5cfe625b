"""What a training step costs with each attention kernel and precision, on the recipe's batches.

    python benchmarks/bench_training_choices.py [--json benchmarks/results/training-choices.json]

The recipe's batches are token-budget batches (at most 1,000 tokens per side, every shape
different), so this times the small preset (vocab 8000) on 15 batches of 1,000 / T sentences of T
tokens, T drawn from 8-29, after 3 warm-up steps, for eager and SDPA attention in fp32 and under bf16
autocast. The ratios, not the seconds, are what carries over to another machine of the same kind;
the CPU and its flags are printed with them. This is the measurement behind `train.train.TRAINING_ATTENTION`
and `train.precision`.
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

VOCAB = 8000


def token_budget_batches(n: int = 15, budget: int = 1000, seed: int = 0, vocab: int = VOCAB) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(n):
        length = int(torch.randint(8, 30, (1,), generator=g))
        ids = torch.randint(4, vocab, (budget // length, length), generator=g)
        labels = torch.randint(4, vocab, (budget // length, length), generator=g)
        batches.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels})
    return batches


def seconds_per_step(attention: str, bf16: bool, batches: list[dict], warmup: int = 3) -> float:
    torch.manual_seed(0)
    config = hvt.VanillaTransformerConfig.small(vocab_size=VOCAB, dropout=0.0, attn_implementation=attention)
    model = hvt.VanillaTransformerForConditionalGeneration(config).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

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
    return (time.perf_counter() - start) / len(batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    batches = token_budget_batches()
    machine = cpu_description() | {"torch": torch.__version__}
    print(json.dumps(machine))
    rows = []
    for attention in ("sdpa", "eager"):
        for bf16 in (False, True):
            rows.append(
                {
                    "attention": attention,
                    "precision": "bf16" if bf16 else "fp32",
                    "seconds": seconds_per_step(attention, bf16, batches),
                }
            )
    baseline = rows[0]["seconds"]
    for row in rows:
        row["speed_vs_sdpa_fp32"] = baseline / row["seconds"]
        print(
            f"{row['attention']:6s} {row['precision']:5s} {row['seconds']:.3f} s/step  {row['speed_vs_sdpa_fp32']:.2f}x"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"machine": machine, "command": " ".join(sys.argv), "rows": rows}, indent=2) + "\n"
        )


if __name__ == "__main__":
    main()
