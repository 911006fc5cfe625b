"""What BPE-dropout (`bpe_dropout`, `train.bpe_dropout`) costs a training run: longer sequences and segmenting.

    python benchmarks/bench_bpe_dropout.py --json benchmarks/results/bpe-dropout-cost.json

A run with a time budget trains fewer steps when each step costs more. This takes a setting's data,
tokenizer size, model and token budget (default: `--setting full-en-de-lc-tok`), trains its BPE, cuts the
epoch's token-budget batches, and in one process, interleaved over `--rounds`, on a quiet machine (wall clock):

- `mismatches_without_dropout`: training pairs whose segmentation by `BpeDropout` at p = 0 is not the
  tokenizer's own, id for id (must be 0);
- `tokens`: tokens per side of the batches, plain and with dropout (dropout lengthens them; the batches
  hold the same pairs: they are cut on the plain lengths);
- `segmenting`: milliseconds per sentence pair of `train.bpe_dropout.BpeDropout` (both sides), in Python;
- `training step`: seconds per update of the setting's model (precision as the run would choose, Adam, label
  smoothing; allocator and oneDNN cache as `train.train` sets them) on the same `--batches` batches, collation
  included, plain and with dropout, after a warm-up over every batch shape timed, and their ratio: the share of
  steps a time-budgeted run keeps is its inverse.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", default="full-en-de-lc-tok", help="a train.recipe setting")
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--batches", type=int, default=20, help="training batches timed per round and arm")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import torch
    from datasets import DatasetDict
    from transformers import DataCollatorForSeq2Seq

    import hf_vanilla_transformer as hvt
    from benchmarks.bench_model import cpu_description
    from train.allocator import keep_freed_memory
    from train.batching import TokenBudgetBatchSampler
    from train.bpe_dropout import BpeDropout, EpochSegmentedDataset
    from train.config import TrainConfig
    from train.data import example_lengths, filter_by_length, load_corpus, tokenize_dataset
    from train.onednn_cache import make_room_for_batch_shapes
    from train.precision import choose_precision
    from train.recipe import SETTINGS
    from train.train import build_model

    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as train.train does
    make_room_for_batch_shapes()
    cfg = TrainConfig.load(SETTINGS[args.setting], {"init_embeddings": None})
    raw = load_corpus(cfg.dataset, cfg.src_lang, cfg.tgt_lang, data_dir=cfg.data_dir)
    train_raw = raw[cfg.train_split]
    tokenizer = hvt.train_tokenizer(texts=list(train_raw["src"]) + list(train_raw["tgt"]), vocab_size=cfg.vocab_size)
    tokenized = tokenize_dataset(DatasetDict({"train": train_raw}), tokenizer)["train"]
    data, _ = filter_by_length(tokenized, cfg.max_source_length, cfg.max_target_length)
    bpe = BpeDropout(tokenizer, args.dropout, max_source_length=cfg.max_source_length,
                     max_target_length=cfg.max_target_length)  # fmt: skip
    columns = data.select_columns(["input_ids", "attention_mask", "labels"])
    sampled = EpochSegmentedDataset(columns, data["src"], data["tgt"], bpe, seed=cfg.seed)
    batches = list(TokenBudgetBatchSampler(*example_lengths(data), cfg.max_tokens, seed=cfg.seed))[: args.batches]
    precision = choose_precision(cfg.precision)
    model = build_model(cfg, tokenizer, precision).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-9)
    collate = DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100)

    def tokens(dataset) -> int:
        return sum(len(dataset[i]["input_ids"]) + len(dataset[i]["labels"]) for batch in batches for i in batch)

    def train_steps(dataset) -> float:
        start = time.perf_counter()
        for batch in batches:
            inputs = collate([dataset[i] for i in batch])
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = model(**inputs, label_smoothing=cfg.label_smoothing).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return (time.perf_counter() - start) / len(batches)

    def segmenting(pairs: int = 2000) -> float:
        start = time.perf_counter()
        for i in range(pairs):
            sampled[i]
        return 1000 * (time.perf_counter() - start) / pairs

    mismatches = sum(
        bpe.encode(row["src"], None, dropout=0.0) != row["input_ids"]
        or bpe.encode(row["tgt"], None, 0.0) != row["labels"]
        for row in data
    )
    print(f"mismatches without dropout: {mismatches} of {len(data)} pairs", file=sys.stderr)
    # Warm-up, as a long run is after its first epochs: oneDNN's kernels compiled for every batch shape timed
    # below (a run's shapes repeat from epoch to epoch, more of them under dropout), the allocator's pages kept.
    train_steps(columns)
    for epoch in range(args.rounds):
        sampled.set_epoch(epoch)
        train_steps(sampled)
    times: dict[str, list[float]] = {"plain": [], "bpe_dropout": [], "segmenting_ms_per_pair": []}
    for round_ in range(args.rounds):
        sampled.set_epoch(round_)
        times["plain"].append(train_steps(columns))
        times["bpe_dropout"].append(train_steps(sampled))
        times["segmenting_ms_per_pair"].append(segmenting())
        print(f"round {round_ + 1}: " + ", ".join(f"{k} {v[-1]:.4f}" for k, v in times.items()), file=sys.stderr)
    median = {name: statistics.median(values) for name, values in times.items()}
    plain_tokens, sampled_tokens = tokens(columns), tokens(sampled)
    record = {
        "machine": cpu_description() | {"threads": args.threads, "clock": "wall", "torch": torch.__version__},
        "command": " ".join(["python", *sys.argv]),
        "setting": args.setting,
        "dataset": f"{cfg.dataset} {cfg.train_split} {cfg.src_lang}-{cfg.tgt_lang}, BPE {cfg.vocab_size}",
        "precision": precision,
        "bpe_dropout": args.dropout,
        "batches": len(batches),
        "max_tokens": cfg.max_tokens,
        "rounds": args.rounds,
        "mismatches_without_dropout": mismatches,
        "pairs": len(data),
        "tokens_plain": plain_tokens,
        "tokens_bpe_dropout": sampled_tokens,
        "token_ratio": sampled_tokens / plain_tokens,
        "segmenting_ms_per_pair": median["segmenting_ms_per_pair"],
        "step_seconds_plain": median["plain"],
        "step_seconds_bpe_dropout": median["bpe_dropout"],
        "step_time_ratio": median["bpe_dropout"] / median["plain"],
    }
    print(json.dumps(record, indent=2))
    if args.json:
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
