"""Where a training step's time goes: torch.profiler's table of one small-preset step.

    python benchmarks/profile_step.py            # fp32, SDPA attention
    python benchmarks/profile_step.py --bf16     # bf16 autocast (add --eager for eager attention)

A batch of 50 sentence pairs of 20 tokens (1,000 tokens per side, the recipe's budget), vocab 8000,
dropout 0.1, three steps after three warm-up steps. The breakdown in `benchmarks/README.md` comes
from this table; shares of the step, not seconds, carry over between machines of a kind.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import hf_vanilla_transformer as hvt  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast")
    parser.add_argument("--eager", action="store_true", help="eager attention instead of SDPA")
    parser.add_argument("--rows", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    config = hvt.VanillaTransformerConfig.small(
        vocab_size=8000, dropout=0.1, attn_implementation="eager" if args.eager else "sdpa"
    )
    model = hvt.VanillaTransformerForConditionalGeneration(config).train()
    g = torch.Generator().manual_seed(0)
    batch = {
        "input_ids": torch.randint(4, 8000, (50, 20), generator=g),
        "labels": torch.randint(4, 8000, (50, 20), generator=g),
    }
    batch["attention_mask"] = torch.ones_like(batch["input_ids"])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            loss = model(**batch, label_smoothing=0.1).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
