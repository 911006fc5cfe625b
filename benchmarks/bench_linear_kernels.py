"""Linear layers at decoding shapes: fused QKV, and oneDNN with a packed weight against F.linear (MKL).

    python benchmarks/bench_linear_kernels.py --json benchmarks/results/linear-kernels.json

A decoding step multiplies one row per sentence (1 for the pipeline's one-sentence calls, 64 greedy, 256 with 4
beams) by each weight of the small preset (d_model 256, FFN 1024, vocabulary 8000). For each shape: median
microseconds per call over interleaved rounds (process CPU time), of

- q, k, v as three `F.linear` calls against one call on the concatenated (768, 256) weight (fused QKV);
- `F.linear` (MKL's sgemm, the weight (out, in) read transposed) against `torch.ops.mkldnn._linear_pointwise` on a
  weight packed once by `torch.ops.mkldnn._reorder_linear_weight` (the route of `hf_vanilla_transformer/onednn.py`),
  and against MKL on a copy of the weight stored transposed, (in, out) (`torch.addmm`): whether a gain is oneDNN's
  kernels or only the weight's layout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_model import cpu_description  # noqa: E402


def median_microseconds(fns: dict, calls: int, rounds: int = 15, clock=time.process_time) -> dict:
    """Median microseconds per call of each function, over `rounds` interleaved rounds of `calls` calls each."""
    times = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(rounds):
        for name, fn in fns.items():
            start = clock()
            for _ in range(calls):
                fn()
            times[name].append((clock() - start) / calls * 1e6)
    return {name: statistics.median(values) for name, values in times.items()}


def fused_qkv_row(x: torch.Tensor, g: torch.Generator) -> dict:
    weights = [torch.randn(256, 256, generator=g) for _ in range(3)]
    biases = [torch.randn(256, generator=g) for _ in range(3)]
    fused_w, fused_b = torch.cat(weights), torch.cat(biases)
    us = median_microseconds(
        {
            "three linears": lambda: [F.linear(x, w, b) for w, b in zip(weights, biases, strict=True)],
            "fused": lambda: F.linear(x, fused_w, fused_b).split(256, dim=-1),
        },
        calls=50,
    )
    return {"shape": f"q,k,v: {x.shape[0]} x 256 -> 3 x 256", "microseconds": us}


def onednn_row(name: str, x: torch.Tensor, out_features: int, bias: bool, g: torch.Generator) -> dict:
    w = torch.randn(out_features, 256, generator=g)
    b = torch.randn(out_features, generator=g) if bias else None
    packed = torch.ops.mkldnn._reorder_linear_weight(w, None)
    w_t = w.t().contiguous()
    us = median_microseconds(
        {
            "F.linear": lambda: F.linear(x, w, b),
            "oneDNN packed": lambda: torch.ops.mkldnn._linear_pointwise(x, packed, b, "none", [], ""),
            "MKL, weight stored transposed": lambda: torch.addmm(b, x, w_t) if b is not None else torch.mm(x, w_t),
        },
        calls=10,
    )
    return {"shape": f"{name}: {x.shape[0]} x 256 -> {out_features}", "microseconds": us}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    rows = []
    with torch.inference_mode():
        for batch in (1, 64, 256):
            x = torch.randn(batch, 256, generator=g)
            rows.append(fused_qkv_row(x, g))
            rows.append(onednn_row("fc1", x, 1024, True, g))
            rows.append(onednn_row("lm_head", x, 8000, False, g))
    machine = cpu_description() | {"torch": torch.__version__}
    print(json.dumps(machine))
    for row in rows:
        times = ", ".join(f"{k} {v:.0f} us" for k, v in row["microseconds"].items())
        first, second, *third = row["microseconds"].values()
        row["speedup"] = first / second
        if third:
            row["speedup_weight_stored_transposed"] = first / third[0]
        print(
            f"{row['shape']:32s} {times}  (speed-up {first / second:.2f}x"
            + (f", transposed weight {first / third[0]:.2f}x)" if third else ")")
        )
    if args.json:
        args.json.write_text(
            json.dumps({"machine": machine, "command": " ".join(sys.argv), "rows": rows}, indent=2) + "\n"
        )


if __name__ == "__main__":
    main()
