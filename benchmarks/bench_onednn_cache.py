"""What room for every batch shape in oneDNN's primitive cache (`train.onednn_cache`) buys a training run.

    python benchmarks/bench_onednn_cache.py --json benchmarks/results/onednn-cache.json

The quick recipe's token-budget batches (Multi30k De-En, its 5,000-word BPE vocabulary, 1,000 tokens per side)
come in 275 shapes per epoch. This takes `--shapes` of them (default 100: enough that their primitives overflow
oneDNN's default cache of 1,024), one batch of random tokens per shape, and trains the small preset on them as the
recipe does on this CPU (bf16 autocast with eager attention where the CPU has native bf16, else fp32 with SDPA):
one pass over the batches (every shape compiled for the first time), then a second pass in another order, as the
next epoch would come. Each round runs two fresh processes, one with oneDNN's default cache and one after
`make_room_for_batch_shapes()` (the order alternates between rounds), on `--threads` threads, quiet machine,
wall clock. The table gives medians over rounds of the seconds per step of each pass and the speed-up of the
second pass (default / enlarged), with each process's peak memory (the compiled kernels the cache keeps).

Without native bf16, the recipe trains in fp32 through MKL, which compiles nothing per shape: expect no
difference there (the rows say which precision ran).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

VOCAB = 5000
MAX_TOKENS = 1000


def recipe_batch_shapes(vocab_size: int = VOCAB, max_tokens: int = MAX_TOKENS) -> list[tuple[int, int, int]]:
    """The distinct (sentences, source length, target length) of the quick recipe's first epoch, in epoch order."""
    import hf_vanilla_transformer as hvt
    from train.batching import TokenBudgetBatchSampler
    from train.data import load_corpus

    train = load_corpus("multi30k", "de", "en")["train"]
    tokenizer = hvt.train_tokenizer(texts=list(train["src"]) + list(train["tgt"]), vocab_size=vocab_size)
    src = [len(ids) for ids in tokenizer(list(train["src"]))["input_ids"]]
    tgt = [len(ids) for ids in tokenizer(text_target=list(train["tgt"]))["input_ids"]]
    sampler = TokenBudgetBatchSampler(src, tgt, max_tokens, seed=1)
    shapes = [(len(b), max(src[i] for i in b), max(tgt[i] for i in b)) for b in sampler]
    return list(dict.fromkeys(shapes))


def child(enlarged: bool, shapes: list[tuple[int, int, int]], threads: int) -> dict:
    """Seconds per step of the two passes over one batch per shape, in a fresh process."""
    from train.onednn_cache import make_room_for_batch_shapes, primitive_cache_state

    state = make_room_for_batch_shapes() if enlarged else primitive_cache_state()
    import torch

    import hf_vanilla_transformer as hvt
    from benchmarks.bench_model import bf16_rows

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    bf16 = bf16_rows()
    config = hvt.VanillaTransformerConfig.small(
        vocab_size=VOCAB, dropout=0.0, attn_implementation="eager" if bf16 else "sdpa"
    )
    model = hvt.VanillaTransformerForConditionalGeneration(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
    batches = [
        {
            "input_ids": torch.randint(4, VOCAB, (rows, src_len)),
            "attention_mask": torch.ones(rows, src_len, dtype=torch.long),
            "labels": torch.randint(4, VOCAB, (rows, tgt_len)),
        }
        for rows, src_len, tgt_len in shapes
    ]

    def run_pass(order: list[dict]) -> float:
        start = time.perf_counter()
        for batch in order:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = model(**batch, label_smoothing=0.1).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return (time.perf_counter() - start) / len(order)

    first = run_pass(batches)
    second = run_pass(random.Random(1).sample(batches, len(batches)))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"cache": state, "precision": "bf16" if bf16 else "fp32", "first_pass": first, "second_pass": second,
            "peak_mib": peak_mib}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", type=int, default=100, help="how many of the recipe's batch shapes to train on")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of each child process")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", choices=["enlarged", "default"], help=argparse.SUPPRESS)
    parser.add_argument("--shapes-json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        shapes = [tuple(shape) for shape in json.loads(args.shapes_json)]
        print(json.dumps(child(args.child == "enlarged", shapes, args.threads)))
        return

    import torch

    from benchmarks.bench_model import cpu_description

    all_shapes = recipe_batch_shapes()
    shapes = random.Random(0).sample(all_shapes, min(args.shapes, len(all_shapes)))
    print(f"{len(all_shapes)} batch shapes in the quick recipe's epoch; training on {len(shapes)}", file=sys.stderr)
    runs: dict[str, list[dict]] = {"default": [], "enlarged": []}
    for round_ in range(args.rounds):
        for kind in ("default", "enlarged") if round_ % 2 == 0 else ("enlarged", "default"):
            command = [sys.executable, __file__, "--child", kind, "--threads", str(args.threads)]
            command += ["--shapes-json", json.dumps(shapes)]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            runs[kind].append(json.loads(output.strip().splitlines()[-1]))
            print(f"round {round_ + 1}, {kind}: {runs[kind][-1]}", file=sys.stderr)
    rows = []
    for kind in ("default", "enlarged"):
        row = {"cache": runs[kind][0]["cache"], "precision": runs[kind][0]["precision"]}
        for measure in ("first_pass", "second_pass", "peak_mib"):
            row[measure] = statistics.median(run[measure] for run in runs[kind])
        rows.append(row)
        print(
            f"{row['cache']:70s} {row['precision']}: first pass {row['first_pass']:.3f} s/step, "
            f"second pass {row['second_pass']:.3f} s/step, peak {row['peak_mib']:,.0f} MiB"
        )
    speedup = rows[0]["second_pass"] / rows[1]["second_pass"]
    print(f"second pass (every shape seen before): {speedup:.2f}x faster with room for every shape")
    if args.json:
        machine = cpu_description() | {"threads": args.threads, "clock": "wall", "torch": torch.__version__}
        record = {
            "machine": machine,
            "command": " ".join(["python", *sys.argv]),
            "recipe_shapes_per_epoch": len(all_shapes),
            "shapes": len(shapes),
            "rounds": args.rounds,
            "rows": rows,
            "second_pass_speedup": speedup,
        }
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
