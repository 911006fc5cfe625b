"""Does bf16 autocast train as well as fp32? Validation loss after a fixed number of steps.

    python benchmarks/bf16_quality.py --steps 800 --json benchmarks/results/bf16-quality.json

Trains the recipe's quick setting (`train/configs/multi30k_de_en.yaml`, no time budget) for `--steps`
updates three times: fp32 with seeds 1 and 2 (the spread between them is the seed noise), and bf16
autocast with seed 1. It reports the validation loss (label-smoothed, on the recipe's 400 validation
pairs) at the last step and the training time. bf16 is acceptable when its loss is within the fp32
seeds' spread (or about as far from fp32 seed 1 as seed 2 is).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_model import cpu_description  # noqa: E402
from train.config import TrainConfig  # noqa: E402
from train.train import train  # noqa: E402

QUICK = Path(__file__).resolve().parents[1] / "train" / "configs" / "multi30k_de_en.yaml"


def run(precision: str, seed: int, steps: int, root: Path) -> dict:
    cfg = TrainConfig.load(
        QUICK,
        [
            f"precision={precision}",
            f"seed={seed}",
            f"max_steps={steps}",
            "max_train_minutes=null",
            f"eval_steps={steps}",
            f"save_steps={steps}",
            "average_last=1",
            "test_split=null",
            f"output_dir={root / f'{precision}-seed{seed}'}",
        ],
    )
    start = time.perf_counter()
    summary = train(cfg)
    rows = [json.loads(line) for line in (Path(cfg.output_dir) / "metrics.jsonl").read_text().splitlines()]
    final = [r for r in rows if "eval_loss" in r][-1]
    return {
        "precision": precision,
        "seed": seed,
        "steps": summary["steps"],
        "eval_loss": final["eval_loss"],
        "eval_bleu_greedy": final.get("eval_bleu"),
        "minutes": (time.perf_counter() - start) / 60,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run(p, s, args.steps, Path(tmp)) for p, s in (("fp32", 1), ("fp32", 2), ("bf16", 1))]
    for row in rows:
        print(row)
    fp32 = [r["eval_loss"] for r in rows if r["precision"] == "fp32"]
    bf16 = next(r["eval_loss"] for r in rows if r["precision"] == "bf16")
    verdict = {
        "fp32_seed_spread": max(fp32) - min(fp32),
        "bf16_minus_fp32_seed1": bf16 - fp32[0],
        "within_noise": min(fp32) - (max(fp32) - min(fp32)) <= bf16 <= max(fp32) + (max(fp32) - min(fp32)),
    }
    print(verdict)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"machine": cpu_description(), "command": " ".join(sys.argv), "rows": rows, "verdict": verdict}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
