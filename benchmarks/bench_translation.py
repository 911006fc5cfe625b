"""Translation speed of a trained model against the same network as transformers' `MarianMTModel`.

    python benchmarks/bench_translation.py runs/multi30k-de-en/model --json benchmarks/results/translation.json
    python benchmarks/bench_translation.py MODEL --dataset multi30k --src-lang de --tgt-lang en --split test

`bench_model.py` times random-weight models on random tokens, forced to exactly 25 new tokens by
`min_new_tokens` (whose two logits processors then run over every row's logits at every step). This
script times what a user runs: a trained model translating a real test set through `train.translate.translate`
(sentences sorted by length, batches of a token budget or `--batch-size` sentences, each sentence stopping at its
own `</s>`), greedy and beam 4. The reference is the *same trained network* converted to `MarianMTModel`
(`hf_vanilla_transformer.marian_export.to_marian`: the same logits), decoding through the same function
with the same settings. Both rank beams with transformers' length penalty (Marian has no other), so both must
write the same translations: the results record the share that is identical (ties aside, 100%). A third row
decodes our model in transformers' loops instead of this package's (`greedy_search.py`, `beam_search.py`), in
which sentences leave the batch once their translation is final (the same translations, tested).

The two models decode in interleaved rounds (A B A B ...) and the medians are compared: a ratio measured
in one run on one machine. The CPU, its flags, torch's thread count, the memory allocator and oneDNN's cache
are recorded.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import hf_vanilla_transformer as hvt  # noqa: E402
from benchmarks.bench_model import (  # noqa: E402
    add_process_options,
    apply_process_options,
    cpu_description,
    interleaved,
    print_rows,
    transformers_loops,
)
from hf_vanilla_transformer.marian_export import to_marian  # noqa: E402
from train.data import add_data_arguments, load_split_from_arguments  # noqa: E402
from train.model_folder import load_model  # noqa: E402
from train.translate import translate  # noqa: E402


def bench_translation(
    model_dir: str | Path,
    sources: list[str],
    *,
    beams: tuple[int, ...] = (1, 4),
    length_penalty: float | None = None,
    max_new_tokens: int = 128,
    batch_size: int | None = None,
    batch_tokens: int = 6000,
    rounds: int = 3,
    clock=time.perf_counter,
) -> list[dict]:
    """One row per (decoding, model): median seconds to translate `sources`, sentences per second, the ratio
    to Marian's time, and the share of translations identical to Marian's.

    Both stop a translation at `max_new_tokens` (Marian cannot express our default limit of input length + 50);
    a trained model ends its translations with `</s>` long before."""
    ours, tokenizer = load_model(model_dir)
    ours.generation_config.length_penalty_form = "hf"  # what Marian can do: the same beams for both
    alpha = ours.generation_config.length_penalty if length_penalty is None else length_penalty
    marian = to_marian(ours)
    marian.generation_config.max_length = None  # both stop at `max_new_tokens` (no warning that it wins)
    rows = []
    for num_beams in beams:
        settings = dict(
            num_beams=num_beams,
            length_penalty=alpha if num_beams > 1 else None,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            batch_tokens=batch_tokens,
        )
        outputs: dict[str, list[str]] = {}

        def run(name, model, context=contextlib.nullcontext, settings=settings, outputs=outputs):
            def decode():
                with context():
                    outputs[name] = translate(model, tokenizer, sources, **settings)

            return decode

        variants = {"marian": run("marian", marian), "ours": run("ours", ours)}
        # The same model in transformers' loops, where every sentence stays to the end.
        loop = functools.partial(transformers_loops, ours)
        variants["ours, transformers' loop"] = run("ours, transformers' loop", ours, loop)
        seconds = interleaved(variants, rounds, clock=clock)
        for name, t in seconds.items():
            identical = sum(a == b for a, b in zip(outputs[name], outputs["marian"], strict=True)) / len(sources)
            rows.append(
                {
                    "measurement": f"{'greedy' if num_beams == 1 else f'beam-{num_beams}'} translation, "
                    f"{len(sources)} sentences",
                    "variant": name,
                    "length_penalty": settings["length_penalty"],
                    "seconds": t,
                    "sentences_per_s": len(sources) / t,
                    "ratio_vs_marian": seconds["marian"] / t,
                    "identical_to_marian": identical,
                }
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a trained model folder (e.g. runs/multi30k-de-en/model)")
    add_data_arguments(parser, split="test")
    parser.add_argument("--max-samples", type=int, default=None, help="the first N sentences only")
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--length-penalty", type=float, default=None, help="alpha (default: the model's)")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="the same output limit for both models")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="sentences per batch (64: the performance issue's batch); default: translate's token budget only",
    )
    parser.add_argument("--batch-tokens", type=int, default=6000, help="source tokens x beams per batch")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians)")
    parser.add_argument("--cpu-time", action="store_true", help="process CPU seconds instead of wall time")
    parser.add_argument("--json", type=Path, help="also write the results here")
    add_process_options(parser)
    args = parser.parse_args(argv)
    process = apply_process_options(args)
    data = load_split_from_arguments(args)
    sources = list(data["src"])[: args.max_samples]
    machine = cpu_description() | {"torch": torch.__version__, "transformers": hvt.compat.INSTALLED_TRANSFORMERS.public}
    machine |= {"clock": "process CPU time" if args.cpu_time else "wall time"} | process
    print(json.dumps(machine))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # to_marian's note that Marian has no GNMT penalty: known
        rows = bench_translation(
            args.model,
            sources,
            beams=tuple(args.beams),
            length_penalty=args.length_penalty,
            max_new_tokens=args.max_new_tokens,
            batch_size=args.batch_size,
            batch_tokens=args.batch_tokens,
            rounds=args.rounds,
            clock=time.process_time if args.cpu_time else time.perf_counter,
        )
    print_rows(rows, widths=(40, 8))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "machine": machine,
            "command": " ".join(sys.argv),
            "model": str(args.model),
            "data": f"{args.dataset} {args.src_lang}-{args.tgt_lang} {args.split}",
            "rows": rows,
        }
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
