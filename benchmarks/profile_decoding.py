"""Where decoding's time goes: our model's steps against transformers' generation loop, and the top operators.

    python benchmarks/profile_decoding.py                 # greedy and beam 4, ours and Marian
    python benchmarks/profile_decoding.py --beams 4 --kind ours --rows 25

The benchmark's decoding task (`bench_model.bench_decoding`): 64 random sentences of 8-32 tokens,
exactly 25 new tokens, small preset, random weights. For each run it splits the time of `generate()`
into the encoder, the decoder steps (the model's `forward`: decoder layers and the pre-softmax linear)
and the rest, transformers' loop (logits processors, beam bookkeeping, cache reordering, input
preparation), then prints torch.profiler's operator table. Times are process CPU seconds, medians
of `--rounds` runs, so a busy machine slows them but other processes do not count; shares carry over
between machines of a kind, seconds do not. With several threads CPU seconds add up over the threads:
on a quiet machine `--wall` splits wall-clock time instead.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_model import (  # noqa: E402
    VOCAB,
    add_process_options,
    apply_process_options,
    build,
    cpu_description,
)


def decoding_sources(sentences: int = 64) -> dict:
    """The benchmark's sources: `sentences` random sentences of 8-32 tokens, padded (as in bench_model)."""
    g = torch.Generator().manual_seed(1)
    lengths = torch.randint(8, 33, (sentences,), generator=g)
    input_ids = torch.zeros(sentences, int(lengths.max()), dtype=torch.long)
    for i, n in enumerate(lengths.tolist()):
        input_ids[i, :n] = torch.randint(4, VOCAB, (n,), generator=g)
    return {"input_ids": input_ids, "attention_mask": (input_ids != 0).long()}


class Stopwatch:
    """Seconds of `clock` spent inside a module's `forward` (wrapped on the instance)."""

    def __init__(self, module: torch.nn.Module, clock=time.process_time):
        self.seconds = 0.0
        inner = module.forward

        def timed(*args, **kwargs):
            start = clock()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds += clock() - start

        module.forward = timed


def split(kind: str, beams: int, rounds: int, clock=time.process_time) -> dict:
    model = build(kind, "small").eval()
    sources = decoding_sources()
    kwargs = dict(num_beams=beams, max_new_tokens=25, min_new_tokens=25, do_sample=False)
    if kind == "ours":
        kwargs["length_penalty_form"] = "hf"
    steps, encoder = Stopwatch(model, clock), Stopwatch(model.get_encoder(), clock)
    parts = {"total": [], "encoder": [], "decoder steps": [], "generation loop": []}
    with torch.inference_mode():
        model.generate(**sources, **kwargs)
        for _ in range(rounds):
            steps.seconds = encoder.seconds = 0.0
            start = clock()
            model.generate(**sources, **kwargs)
            total = clock() - start
            parts["total"].append(total)
            parts["encoder"].append(encoder.seconds)
            parts["decoder steps"].append(steps.seconds)
            parts["generation loop"].append(total - encoder.seconds - steps.seconds)
    return {name: statistics.median(values) for name, values in parts.items()}, model, sources, kwargs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--kind", nargs="+", choices=["ours", "marian"], default=["marian", "ours"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=15, help="operators in the profiler table (0: none)")
    parser.add_argument("--json", type=Path, help="also write the time splits here")
    parser.add_argument(
        "--wall", action="store_true", help="wall-clock seconds (for several threads on a quiet machine); default: CPU"
    )
    add_process_options(parser)
    args = parser.parse_args()
    process = apply_process_options(args)
    clock = time.perf_counter if args.wall else time.process_time
    machine = cpu_description() | {"torch": torch.__version__, "clock": "wall" if args.wall else "process CPU"}
    machine |= process
    print(json.dumps(machine))
    results = []
    for beams in args.beams:
        for kind in args.kind:
            parts, model, sources, kwargs = split(kind, beams, args.rounds, clock)
            results.append({"model": kind, "num_beams": beams, "seconds" if args.wall else "cpu_seconds": parts})
            shares = ", ".join(f"{name} {t:.3f}s ({t / parts['total']:.0%})" for name, t in parts.items())
            print(f"\n## {kind}, {'greedy' if beams == 1 else f'beam {beams}'}: {shares}")
            if args.rows:
                with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
                    model.generate(**sources, **kwargs)
                print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
    if args.json:
        args.json.write_text(
            json.dumps({"machine": machine, "command": " ".join(sys.argv), "splits": results}, indent=2) + "\n"
        )


if __name__ == "__main__":
    main()
