"""A beam-search step's best candidates: transformers' way against `beam_search.best_candidates`.

    python benchmarks/bench_beam_candidates.py --json benchmarks/results/beam-candidates-<cpu>.json

At every step beam search turns the logits of its n * k rows (n sentences, k = 4 beams) into each sentence's 2k
best candidates. transformers takes the log-softmax, adds each beam's score to its whole row, and ranks the k * V
sums of a sentence (`_get_top_k_continuations`); `best_candidates` ranks each beam's 2k best log-probabilities
first and adds the beam scores to those only. Both start from the logits (the log-softmax is timed in both). For
vocabularies of 5,000, 8,000 and 32,000 and 8 or 64 sentences: median microseconds per step over interleaved
rounds (wall clock), and the speed-up. Both give the same candidates and scores (checked here, and token for token
against transformers' loop in `tests/test_beam_search.py`).

Then whole beam-4 `generate()` calls of the decoding benchmark (64 sentences of 8-32 tokens, exactly 25 new tokens,
small preset, random weights) with each ranking, in `--rounds` interleaved rounds: what the step's speed-up is worth
in a call, where the products of the layers and the cache take most of the time.
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
from benchmarks.bench_model import (  # noqa: E402
    build,
    cpu_description,
    every_sum_ranked,
    every_sum_ranked_in_beam_search,
    interleaved,
)
from benchmarks.profile_decoding import decoding_sources  # noqa: E402
from hf_vanilla_transformer.beam_search import best_candidates  # noqa: E402

BEAMS = 4


def transformers_candidates(logits: torch.Tensor, beam_scores: torch.Tensor, count: int):
    """transformers' step: the log-softmax, every beam's score added to its row, the k * V sums ranked."""
    n, k = beam_scores.shape
    return every_sum_ranked(torch.log_softmax(logits, dim=-1).view(n, k, -1), beam_scores, count)


def package_candidates(logits: torch.Tensor, beam_scores: torch.Tensor, count: int):
    n, k = beam_scores.shape
    return best_candidates(torch.log_softmax(logits, dim=-1).view(n, k, -1), beam_scores, count)


def bench_calls(rounds: int) -> dict:
    """Median seconds of beam-4 `generate()` calls of the decoding benchmark with each ranking."""
    model, sources = build("ours", "small").eval(), decoding_sources()
    fixed = dict(num_beams=BEAMS, max_new_tokens=25, min_new_tokens=25, do_sample=False, length_penalty_form="hf")

    def package():
        return model.generate(**sources, **fixed)

    def transformers_way():
        with every_sum_ranked_in_beam_search():
            return model.generate(**sources, **fixed)

    with torch.inference_mode():
        assert torch.equal(package(), transformers_way())
        seconds = interleaved({"transformers": transformers_way, "best_candidates": package}, rounds, warmup=1)
    speedup = seconds["transformers"] / seconds["best_candidates"]
    print(
        f"beam-4 generate(), 64 sentences x 25 tokens: transformers' way {seconds['transformers']:.3f} s, "
        f"best_candidates {seconds['best_candidates']:.3f} s (speed-up {speedup:.2f}x)"
    )
    return {"seconds": seconds, "speed_up": speedup, "rounds": rounds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds of the generate() calls")
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    rows = []
    with torch.inference_mode():
        for vocab in (5000, 8000, 32000):
            for sentences in (8, 64):
                logits = 3 * torch.randn(sentences * BEAMS, vocab, generator=generator)
                beam_scores = -5 * torch.rand(sentences, BEAMS, generator=generator)
                expected = transformers_candidates(logits, beam_scores, 2 * BEAMS)
                got = package_candidates(logits, beam_scores, 2 * BEAMS)
                assert all(torch.equal(a, b) for a, b in zip(expected, got, strict=True))
                us = median_microseconds(
                    {
                        "transformers": lambda x=logits, b=beam_scores: transformers_candidates(x, b, 2 * BEAMS),
                        "best_candidates": lambda x=logits, b=beam_scores: package_candidates(x, b, 2 * BEAMS),
                    },
                    calls=10,
                    clock=time.perf_counter,
                )
                rows.append(
                    {
                        "sentences": sentences,
                        "beams": BEAMS,
                        "vocab": vocab,
                        "microseconds": us,
                        "speedup": us["transformers"] / us["best_candidates"],
                    }
                )
    machine = cpu_description() | {"torch": torch.__version__}
    print(json.dumps(machine))
    for row in rows:
        us = row["microseconds"]
        print(
            f"{row['sentences']} sentences x {row['beams']} beams, V {row['vocab']}: transformers' way "
            f"{us['transformers']:.0f} us, best_candidates {us['best_candidates']:.0f} us "
            f"(speed-up {row['speedup']:.2f}x)"
        )
    calls = bench_calls(args.rounds)
    if args.json:
        args.json.write_text(
            json.dumps(
                {"machine": machine, "command": " ".join(sys.argv), "rows": rows, "generate_calls": calls}, indent=2
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
