"""Speed of the model against references measured in the same run (ratios, not absolute targets).

    python benchmarks/bench_model.py            # small preset, vocab 8000, CPU
    python benchmarks/bench_model.py --quick    # fewer repetitions

Compares, on identical batches:
- a training step (forward + backward + Adam) of VanillaTransformerForConditionalGeneration against
  transformers' MarianMTModel of the same size and options (the same architecture in-library);
- eager against SDPA attention;
- beam-4 generation with the KV cache against generation without it.
Prints the median time of each and the ratio ours / reference (< 1 means faster).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from transformers import MarianConfig, MarianMTModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import hf_vanilla_transformer as hvt  # noqa: E402

SIZE_FIELDS = (
    "vocab_size",
    "d_model",
    "encoder_layers",
    "decoder_layers",
    "encoder_attention_heads",
    "decoder_attention_heads",
    "encoder_ffn_dim",
    "decoder_ffn_dim",
    "max_position_embeddings",
)


def small_sizes(vocab_size: int = 8000) -> dict:
    """The `small` preset's sizes, in the field names that MarianConfig shares with ours."""
    preset = hvt.VanillaTransformerConfig.small(vocab_size=vocab_size)
    return {name: getattr(preset, name) for name in SIZE_FIELDS}


SIZES = small_sizes()


def median_seconds(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def ours(implementation: str = "sdpa"):
    torch.manual_seed(0)
    config = hvt.VanillaTransformerConfig(
        **SIZES, attention_bias=True, sinusoidal_layout="concat", dropout=0.1, attn_implementation=implementation
    )
    return hvt.VanillaTransformerForConditionalGeneration(config)


def marian(implementation: str = "sdpa"):
    torch.manual_seed(0)
    return MarianMTModel(
        MarianConfig(
            **SIZES,
            activation_function="relu",
            scale_embedding=True,
            dropout=0.1,
            pad_token_id=0,
            eos_token_id=2,
            decoder_start_token_id=1,
            forced_eos_token_id=None,
            attn_implementation=implementation,
        )
    )


def train_step(model, batch):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    model.train()

    def step():
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    g = torch.Generator().manual_seed(0)
    batch = {
        "input_ids": torch.randint(4, 8000, (64, 20), generator=g),
        "labels": torch.randint(4, 8000, (64, 20), generator=g),
    }
    batch["attention_mask"] = torch.ones_like(batch["input_ids"])
    rows = []

    t_ours = median_seconds(train_step(ours(), batch), repeats)
    t_marian = median_seconds(train_step(marian(), batch), repeats)
    rows.append(("train step, 1280+1280 tokens", "MarianMTModel", t_ours, t_marian))

    t_eager = median_seconds(train_step(ours("eager"), batch), repeats)
    rows.append(("train step, SDPA", "same model, eager", t_ours, t_eager))

    model = ours().eval()
    source = {"input_ids": batch["input_ids"][:16], "attention_mask": batch["attention_mask"][:16]}
    with torch.inference_mode():
        cached = median_seconds(
            lambda: model.generate(**source, num_beams=4, max_new_tokens=30, use_cache=True), repeats, warmup=1
        )
        uncached = median_seconds(
            lambda: model.generate(**source, num_beams=4, max_new_tokens=30, use_cache=False), repeats, warmup=1
        )
    rows.append(("beam-4 generation, 16 x 30 tokens, KV cache", "no cache", cached, uncached))

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'measurement':45s} {'reference':20s} {'ours (s)':>10s} {'ref (s)':>10s} {'ratio':>7s}")
    for name, reference, t, r in rows:
        print(f"{name:45s} {reference:20s} {t:10.3f} {r:10.3f} {t / r:7.2f}")


if __name__ == "__main__":
    main()
