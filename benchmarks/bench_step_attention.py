"""Attention of a cached decoding step: `attention.decode_step_attention` (the products of eq. 1) against torch's
fused SDPA kernel.

    python benchmarks/bench_step_attention.py --json benchmarks/results/step-attention-<cpu>.json

A cached step of an SDPA model computes attention for one query per sentence (self-attention, keys = the target
so far) or for the k folded beams of a sentence (encoder-decoder attention, keys = the source). For 1 to 256
sentences, 4 heads of 64 dimensions (the small preset), 12 or 30 keys, with no mask (self-attention) and with a
boolean padding mask as transformers builds it for SDPA (encoder-decoder attention): median microseconds per
call over interleaved rounds (wall clock), and SDPA's time over the products' (above 1: the products are faster).
Both give the same output (checked here, and in `tests/test_decoding_fast_path.py`).

Then whole `generate()` calls of the small preset (random weights, sources of 14 tokens, exactly 15 new tokens;
the shapes of `bench_onednn_route.py`), greedy and beam 4, from 1 to 64 sentences, in interleaved rounds: the
products at every step (`DECODE_STEP_MIN_ROWS = 1`, the rule before session 22) against the default rule (the
products from `DECODE_STEP_MIN_ROWS` rows up); the speed-up is the first's median time over the second's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import hf_vanilla_transformer as hvt  # noqa: E402
from benchmarks.bench_linear_kernels import median_microseconds  # noqa: E402
from benchmarks.bench_model import VOCAB, build, cpu_description, interleaved  # noqa: E402
from benchmarks.bench_onednn_route import SHAPES  # noqa: E402
from hf_vanilla_transformer.attention import decode_step_attention  # noqa: E402

HEADS, HEAD_DIM = 4, 64


def bench_calls(rounds: int, new_tokens: int = 15, source_tokens: int = 14) -> list[dict]:
    """`generate()` calls of each shape of `SHAPES`: the products at every step against the default rule."""
    generator = torch.Generator().manual_seed(1)
    model = build("ours", "small").eval()
    default = hvt.attention.DECODE_STEP_MIN_ROWS
    rows = []
    for sentences, beams in SHAPES:
        ids = torch.randint(4, VOCAB, (sentences, source_tokens), generator=generator)
        source = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        fixed = dict(num_beams=beams, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)

        def call(min_rows: int, source=source, fixed=fixed):
            def run():
                hvt.attention.DECODE_STEP_MIN_ROWS = min_rows
                try:
                    return model.generate(**source, **fixed)
                finally:
                    hvt.attention.DECODE_STEP_MIN_ROWS = default

            return run

        with torch.inference_mode():
            seconds = interleaved({"products always": call(1), "default rule": call(default)}, rounds, warmup=1)
        speedup = seconds["products always"] / seconds["default rule"]
        print(
            f"{sentences:3d} sentences, beam {beams}: products always {seconds['products always'] * 1e3:.1f} ms, "
            f"default rule {seconds['default rule'] * 1e3:.1f} ms (speed-up {speedup:.2f}x)"
        )
        rows.append(
            {"sentences": sentences, "beams": beams, "new_tokens": new_tokens, "seconds": seconds}
            | {"speed_up": speedup}
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds of the generate() calls")
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    module = torch.nn.Module().eval()
    scaling = HEAD_DIM**-0.5
    rows = []
    with torch.inference_mode():
        for sentences in (1, 4, 16, 64, 256):
            for queries, keys, masked in ((1, 12, False), (1, 30, False), (1, 30, True), (4, 30, True)):
                query = torch.randn(sentences, HEADS, queries, HEAD_DIM, generator=generator)
                key, value = (torch.randn(sentences, HEADS, keys, HEAD_DIM, generator=generator) for _ in range(2))
                mask = None
                if masked:  # every third sentence has 5 padding positions
                    mask = torch.ones(sentences, 1, 1, keys, dtype=torch.bool)
                    mask[::3, ..., -5:] = False

                def products(q=query, k=key, v=value, m=mask):
                    return decode_step_attention(module, q, k, v, m, scaling)[0]

                def sdpa(q=query, k=key, v=value, m=mask):
                    return F.scaled_dot_product_attention(q, k, v, attn_mask=m, scale=scaling).transpose(1, 2)

                torch.testing.assert_close(products(), sdpa())
                us = median_microseconds({"products": products, "sdpa": sdpa}, calls=50, clock=time.perf_counter)
                rows.append(
                    {
                        "sentences": sentences,
                        "queries": queries,
                        "keys": keys,
                        "mask": "boolean padding" if masked else "none",
                        "microseconds": us,
                        "sdpa_over_products": us["sdpa"] / us["products"],
                    }
                )
    machine = cpu_description() | {"torch": torch.__version__}
    print(json.dumps(machine))
    for row in rows:
        us = row["microseconds"]
        print(
            f"{row['sentences']:>3} sentences, {row['queries']} queries x {row['keys']} keys, mask {row['mask']}: "
            f"products {us['products']:.0f} us, SDPA {us['sdpa']:.0f} us "
            f"(SDPA / products {row['sdpa_over_products']:.2f})"
        )
    calls = bench_calls(args.rounds)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": machine,
                    "command": " ".join(sys.argv),
                    "default_min_rows": hvt.attention.DECODE_STEP_MIN_ROWS,
                    "rows": rows,
                    "generate_calls": calls,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
