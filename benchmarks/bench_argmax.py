"""The most probable token of each sentence at a greedy step: torch's `argmax` against `greedy_search.first_argmax`.

    python benchmarks/bench_argmax.py --json benchmarks/results/argmax.json

A greedy step of 64 sentences takes the argmax of (64, V) logits. For vocabularies of 5,000 (the quick recipe),
8,000 (the decoding benchmark, the long runs) and 32,000, and 8, 64 and 256 rows: median microseconds per call over
interleaved rounds (wall clock), at torch's thread count and at one thread, and the speed-up. Both give the same
indices (checked here, and in `tests/test_greedy_search.py`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_linear_kernels import median_microseconds  # noqa: E402
from benchmarks.bench_model import cpu_description  # noqa: E402
from hf_vanilla_transformer.greedy_search import first_argmax  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    default_threads = torch.get_num_threads()
    rows = []
    with torch.inference_mode():
        for threads in sorted({default_threads, 1}, reverse=True):
            torch.set_num_threads(threads)
            for vocab in (5000, 8000, 32000):
                for batch in (8, 64, 256):
                    logits = torch.randn(batch, vocab, generator=generator)
                    assert torch.equal(first_argmax(logits), logits.argmax(dim=-1))
                    us = median_microseconds(
                        {"argmax": lambda x=logits: x.argmax(dim=-1), "first_argmax": lambda x=logits: first_argmax(x)},
                        calls=20,
                        clock=time.perf_counter,
                    )
                    rows.append(
                        {
                            "threads": threads,
                            "shape": [batch, vocab],
                            "microseconds": us,
                            "speedup": us["argmax"] / us["first_argmax"],
                        }
                    )
    torch.set_num_threads(default_threads)
    machine = cpu_description() | {"torch": torch.__version__}
    print(json.dumps(machine))
    for row in rows:
        us = row["microseconds"]
        print(
            f"{row['threads']} thread(s), ({row['shape'][0]}, {row['shape'][1]}): argmax {us['argmax']:.0f} us, "
            f"first_argmax {us['first_argmax']:.0f} us (speed-up {row['speedup']:.2f}x)"
        )
    if args.json:
        args.json.write_text(
            json.dumps({"machine": machine, "command": " ".join(sys.argv), "rows": rows}, indent=2) + "\n"
        )


if __name__ == "__main__":
    main()
