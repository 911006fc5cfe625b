"""Which of the model's linear layers oneDNN's packed weights pay for on this CPU, in whole `generate()` calls,
packing included.

    python benchmarks/bench_onednn_route.py --json benchmarks/results/onednn-route-<cpu>.json

`hf_vanilla_transformer/onednn.py` sends linear layers to oneDNN with weights it packs once per `generate()` call:
every layer (49 weights for the small preset), the pre-softmax layer only, or none, as measured to pay on the CPU
(`onednn.route()`). `bench_linear_kernels.py` times single products, without the packing; this times what a user
waits for: `generate()` calls of the small preset (random weights, sources of 14 tokens, exactly 15 new tokens
each), from one sentence greedy (the pipeline's case, one call per sentence) to 64 sentences, with each route
(`prefer_onednn("none" | "pre-softmax" | "all")`; "none" is `F.linear`, MKL), in interleaved rounds. A speed-up is
F.linear's median time over the route's: above 1, the route pays for such calls on this CPU.

With `--model MODEL` (a trained model folder), also `train.translate.translate()` of the first `--lines` sentences of
Multi30k test2016 (German) in batches of 64, greedy and beam 4, each route: the translation CLI holds one packing
block around all its batches, so there the packing is paid once for the whole text.
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


def each_route(work, rounds: int, label: str, unit: str = "ms") -> dict:
    """Median seconds of `work()` with each route (`onednn.ROUTES`), in interleaved rounds; printed with `label`."""

    def on_route(route: str):
        def run():
            with hvt.onednn.prefer_onednn(route):
                return work()

        return run

    with torch.inference_mode():
        seconds = interleaved({route: on_route(route) for route in hvt.onednn.ROUTES}, rounds, warmup=1)
    timed = {f"seconds_{route.replace('-', '_')}": seconds[route] for route in hvt.onednn.ROUTES}
    for route in hvt.onednn.ROUTES[1:]:
        timed[f"speed_up_{route.replace('-', '_')}"] = seconds["none"] / seconds[route]
    scale = 1e3 if unit == "ms" else 1.0
    print(
        f"{label}: "
        + ", ".join(f"{route} {seconds[route] * scale:7.2f} {unit}" for route in hvt.onednn.ROUTES)
        + "  (speed-up over F.linear: "
        + ", ".join(f"{route} {seconds['none'] / seconds[route]:.2f}x" for route in hvt.onednn.ROUTES[1:])
        + ")"
    )
    return timed


def bench_route(rounds: int, new_tokens: int = 15, source_tokens: int = 14) -> list[dict]:
    """`generate()` calls of the small preset (random weights) of each shape in `SHAPES`, with each route."""
    generator = torch.Generator().manual_seed(1)
    model = build("ours", "small").eval()
    rows = []
    for sentences, beams in SHAPES:
        ids = torch.randint(4, VOCAB, (sentences, source_tokens), generator=generator)
        source = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        fixed = dict(num_beams=beams, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)

        def call(source=source, fixed=fixed):
            return model.generate(**source, **fixed)

        with torch.inference_mode():
            tokens = {}
            for route in hvt.onednn.ROUTES:
                with hvt.onednn.prefer_onednn(route):
                    tokens[route] = call()
            assert all(torch.equal(tokens["none"], t) for t in tokens.values()), "the routes should agree here"
        timed = each_route(call, rounds, f"{sentences:3d} sentences, beam {beams}")
        rows.append({"sentences": sentences, "beams": beams, "new_tokens": new_tokens} | timed)
    return rows


def bench_translate(model_dir: str, lines: int, rounds: int) -> list[dict]:
    """`translate()` of the first `lines` German sentences of Multi30k test2016, batches of 64, with each route."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from train.data import local_data_dir
    from train.translate import translate

    model = AutoModelForSeq2SeqLM.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    data = local_data_dir("multi30k")
    if data is None:
        raise SystemExit("--model needs a local copy of Multi30k ($HVT_DATA_DIR/multi30k or ../shared/data/multi30k)")
    texts = (data / "test2016.de").read_text(encoding="utf-8").splitlines()[:lines]
    rows = []
    for beams in (1, 4):
        label = f"translate() of {len(texts)} test2016 sentences, beam {beams}"
        timed = each_route(
            lambda beams=beams: translate(model, tokenizer, texts, num_beams=beams, batch_size=64),
            rounds,
            label,
            unit="s",
        )
        rows.append({"translate_lines": len(texts), "batch_size": 64, "beams": beams} | timed)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds (medians)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--model", help="a trained model folder: also time translate() of Multi30k test2016 lines")
    parser.add_argument("--lines", type=int, default=400, help="test2016 sentences translated with --model")
    args = parser.parse_args(argv)
    machine = cpu_description() | {
        "cpu_vendor": hvt.onednn.cpu_vendor(),
        "route_by_default": hvt.onednn.route(),
        "torch": torch.__version__,
        "clock": "wall time",
    }
    print(json.dumps(machine))
    rows = bench_route(args.rounds)
    if args.model:
        rows += bench_translate(args.model, args.lines, args.rounds)
    if args.json:
        command = "benchmarks/bench_onednn_route.py " + " ".join(sys.argv[1:] if argv is None else argv)
        Path(args.json).write_text(json.dumps({"machine": machine, "command": command, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
