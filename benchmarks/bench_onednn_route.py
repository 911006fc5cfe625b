"""Whether oneDNN's packed linear layers pay for whole `generate()` calls on this CPU, packing included.

    python benchmarks/bench_onednn_route.py --json benchmarks/results/onednn-route-<cpu>.json

`hf_vanilla_transformer/onednn.py` sends the model's linear layers to oneDNN with weights it packs once per
`generate()` call (49 weights for the small preset), on the CPUs where that was measured to pay
(`onednn.onednn_pays()`). `bench_linear_kernels.py` times single products, without the packing; this times what
a user waits for: `generate()` calls of the small preset (random weights, sources of 14 tokens, exactly 15 new
tokens each), from one sentence greedy (the pipeline's case, one call per sentence) to 64 sentences, with the
route taken (`prefer_onednn(True)`) and not taken (`prefer_onednn(False)`: `F.linear`, MKL), in interleaved rounds.
The speed-up is F.linear's median time over oneDNN's: above 1, the route pays for such calls on this CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import hf_vanilla_transformer as hvt  # noqa: E402
from benchmarks.bench_model import VOCAB, build, cpu_description, interleaved  # noqa: E402

SHAPES = ((1, 1), (1, 4), (8, 4), (64, 1), (64, 4))
"""(sentences per call, beams) of the calls timed."""


def bench_route(rounds: int, new_tokens: int = 15, source_tokens: int = 14) -> list[dict]:
    generator = torch.Generator().manual_seed(1)
    model = build("ours", "small").eval()
    rows = []
    for sentences, beams in SHAPES:
        ids = torch.randint(4, VOCAB, (sentences, source_tokens), generator=generator)
        source = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        fixed = dict(num_beams=beams, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)

        def call(route: bool, source=source, fixed=fixed):
            def decode():
                with hvt.onednn.prefer_onednn(route):
                    return model.generate(**source, **fixed)

            return decode

        with torch.inference_mode():
            assert torch.equal(call(True)(), call(False)()), "the two routes should give the same tokens here"
            seconds = interleaved({"oneDNN": call(True), "F.linear": call(False)}, rounds, warmup=1)
        rows.append(
            {
                "sentences": sentences,
                "beams": beams,
                "new_tokens": new_tokens,
                "seconds_onednn": seconds["oneDNN"],
                "seconds_f_linear": seconds["F.linear"],
                "onednn_speed_up": seconds["F.linear"] / seconds["oneDNN"],
            }
        )
        print(
            f"{sentences:3d} sentences, beam {beams}: oneDNN {seconds['oneDNN'] * 1e3:7.1f} ms, "
            f"F.linear {seconds['F.linear'] * 1e3:7.1f} ms  (oneDNN speed-up {rows[-1]['onednn_speed_up']:.2f}x)"
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds (medians)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    machine = cpu_description() | {
        "cpu_vendor": hvt.onednn.cpu_vendor(),
        "route_taken_by_default": hvt.onednn.onednn_pays(),
        "torch": torch.__version__,
        "clock": "wall time",
    }
    print(json.dumps(machine))
    rows = bench_route(args.rounds)
    if args.json:
        command = "benchmarks/bench_onednn_route.py " + " ".join(sys.argv[1:] if argv is None else argv)
        Path(args.json).write_text(json.dumps({"machine": machine, "command": command, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
