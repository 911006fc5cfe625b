"""Training-step time of the recurrent models against the Transformer's `small` preset, to size them for a time budget.

The quick recipe (`train/configs/multi30k_de_en.yaml`) trains the Transformer for 12 minutes; a recurrent model gets
as many updates in the same time when its step costs about as much. This times forward + backward on batches shaped
like the recipe's (`max_tokens: 1000`: about 60 Multi30k pairs of about 16 tokens, an 8000-token vocabulary), in
interleaved rounds (so that load from other processes hits every model alike), and reports seconds per step and the
ratio to the Transformer.

    python benchmarks/bench_rnn_step.py --rounds 3 --output benchmarks/results/rnn-step-time.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModelForSeq2SeqLM

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hf_vanilla_transformer as hvt  # noqa: E402
from train.precision import choose_precision, machine_description  # noqa: E402

VOCAB = 8000
CANDIDATES = {
    "transformer small": (hvt.VanillaTransformerConfig, "small", {"dropout": 0.0}),
    "rnn-encoder-decoder lstm 2x256": (hvt.RNNEncoderDecoderConfig, "small", {"hidden_size": 256}),
    "rnn-encoder-decoder lstm 2x512 (small)": (hvt.RNNEncoderDecoderConfig, "small", {}),
    "rnn-search gru 256 (small)": (hvt.RNNSearchConfig, "small", {}),
    "rnn-search gru 384": (hvt.RNNSearchConfig, "small", {"hidden_size": 384, "attention_size": 384}),
}


def build(config_class, preset: str, overrides: dict) -> torch.nn.Module:
    config = config_class.from_preset(preset, vocab_size=VOCAB, **overrides)
    return AutoModelForSeq2SeqLM.from_config(config).train()


def step_seconds(model, batch: dict, precision: str, steps: int) -> float:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    start = time.perf_counter()
    for _ in range(steps):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per model and round")
    parser.add_argument("--precision", default="auto", help="auto (as training picks), fp32 or bf16")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    precision = choose_precision(args.precision)
    torch.manual_seed(0)
    batch = {
        "input_ids": torch.randint(4, VOCAB, (60, 16)),
        "attention_mask": torch.ones(60, 16, dtype=torch.long),
        "labels": torch.randint(4, VOCAB, (60, 16)),
    }
    models = {name: build(*spec) for name, spec in CANDIDATES.items()}
    times: dict[str, list[float]] = {name: [] for name in models}
    for model in models.values():  # warm-up
        step_seconds(model, batch, precision, 1)
    for round_ in range(args.rounds):
        for name, model in models.items():
            times[name].append(step_seconds(model, batch, precision, args.steps))
            print(f"round {round_ + 1} {name}: {times[name][-1]:.3f} s/step", flush=True)
    reference = statistics.median(times["transformer small"])
    results = {
        "command": "python benchmarks/bench_rnn_step.py " + " ".join(sys.argv[1:]),
        "batch": "60 pairs x 16 tokens per side, vocabulary 8000 (the quick recipe's max_tokens: 1000)",
        "precision": precision,
        "machine": machine_description(),
        "models": {
            name: {
                "parameters": sum(p.numel() for p in models[name].parameters()),
                "median_seconds_per_step": statistics.median(values),
                "seconds_per_step": values,
                "ratio_to_transformer_small": statistics.median(values) / reference,
            }
            for name, values in times.items()
        },
    }
    print(json.dumps(results["models"], indent=2))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
