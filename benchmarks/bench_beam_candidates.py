"""A beam-search step's best candidates: transformers' way against `beam_search.best_candidates`.

    python benchmarks/bench_beam_candidates.py --json benchmarks/results/beam-candidates-<cpu>.json

At every step beam search turns the logits of its n * k rows (n sentences, k = 4 beams) into each sentence's 2k
best candidates. transformers takes the log-softmax, adds each beam's score to its whole row, and ranks the k * V
sums of a sentence (`_get_top_k_continuations`); `best_candidates` ranks each beam's 2k best log-probabilities
first and adds the beam scores to those only. Both start from the logits (the log-softmax is timed in both). For
vocabularies of 5,000, 8,000 and 32,000 and 8 or 64 sentences: median microseconds per step over interleaved
rounds (wall clock), and the speed-up. Both give the same candidates and scores (checked here, and token for token
against transformers' loop in `tests/test_beam_search.py`).
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
from hf_vanilla_transformer.beam_search import best_candidates  # noqa: E402

BEAMS = 4


def transformers_candidates(logits: torch.Tensor, beam_scores: torch.Tensor, count: int):
    """transformers' step: the log-softmax, every beam's score added to its row, the k * V sums ranked."""
    n, k = beam_scores.shape
    log_probs = torch.log_softmax(logits, dim=-1)
    vocab = log_probs.shape[-1]
    sums = (log_probs.view(n, k, vocab) + beam_scores[:, :, None]).view(n, k * vocab)
    top_scores, top = torch.topk(sums, count)
    return top_scores, top // vocab, top % vocab


def package_candidates(logits: torch.Tensor, beam_scores: torch.Tensor, count: int):
    n, k = beam_scores.shape
    return best_candidates(torch.log_softmax(logits, dim=-1).view(n, k, -1), beam_scores, count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, help="also write the results here")
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
    if args.json:
        args.json.write_text(
            json.dumps({"machine": machine, "command": " ".join(sys.argv), "rows": rows}, indent=2) + "\n"
        )


if __name__ == "__main__":
    main()
