"""What keeping freed memory (`train.allocator.keep_freed_memory`) buys: training steps and beam search, with and
without it, in fresh processes taking turns.

    python benchmarks/bench_allocator.py --json benchmarks/results/allocator.json
    python benchmarks/bench_allocator.py --rounds 5 --cpu-time      # a shared machine: CPU seconds (user + kernel)

Each round starts child processes that call `keep_freed_memory()` first and child processes that leave glibc's
`malloc` as it is (the order alternates between rounds); training and decoding each get a fresh process, as
a training run and a translation would. On `--threads` threads (default 1) they time:

- training steps of our model (small preset; bf16 autocast with eager attention where the CPU has native bf16,
  as `precision: auto` trains, else fp32) and of `MarianMTModel` of the same size (fp32, the Trainer's default),
  on the quick recipe's batch size (60 pairs of 8-32 tokens, about 1,000 tokens per side);
- beam-4 decoding of 64 sentences, 25 new tokens (`bench_model`'s decoding task), ours and Marian's;

and counts the page faults (`getrusage`) of each. The table gives medians over rounds and the speed-up (time
without / time with). The setting is process-wide, so it speeds Marian up as well: the ratios of ours against
Marian in `bench_model.py` are measured without it, as a plain Hugging Face user runs.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def child(keep: bool, task: str, cpu_time: bool, threads: int = 1) -> dict:
    """Measurements of one process (`task`: "training" or "decoding", each in a fresh process, as a training run
    or a translation would be): seconds and page faults per training step / per decoding."""
    import torch

    from train.allocator import keep_freed_memory

    state = keep_freed_memory() if keep else "glibc default"
    from benchmarks.bench_model import bf16_rows, build, train_step, training_batch
    from benchmarks.profile_decoding import decoding_sources

    torch.set_num_threads(threads)
    clock = time.process_time if cpu_time else time.perf_counter
    bf16 = bf16_rows()

    def measure(fn, warmup: int, repeats: int) -> dict:
        for _ in range(warmup):
            fn()
        before, start = resource.getrusage(resource.RUSAGE_SELF), clock()
        for _ in range(repeats):
            fn()
        after = resource.getrusage(resource.RUSAGE_SELF)
        return {"seconds": (clock() - start) / repeats, "page_faults": (after.ru_minflt - before.ru_minflt) / repeats}

    results = {"allocator": state}
    if task == "training":
        batch = training_batch(pairs=60)
        ours = build("ours", "small", attention="eager" if bf16 else "sdpa")
        results[f"training step, ours {'bf16' if bf16 else 'fp32'}"] = measure(train_step(ours, batch, bf16=bf16), 3, 8)
        results["training step, Marian fp32"] = measure(train_step(build("marian", "small"), batch), 2, 4)
        return results
    sources = decoding_sources()
    fixed = dict(num_beams=4, max_new_tokens=25, min_new_tokens=25, do_sample=False)
    ours, marian = build("ours", "small").eval(), build("marian", "small").eval()
    with torch.inference_mode():
        results["beam-4 decoding, ours fp32"] = measure(
            lambda: ours.generate(**sources, **fixed, length_penalty_form="hf"), 1, 3
        )
        results["beam-4 decoding, Marian fp32"] = measure(lambda: marian.generate(**sources, **fixed), 1, 3)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cpu-time", action="store_true", help="process CPU seconds (user + kernel) instead of wall")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each child process")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", choices=["keep", "default"], help=argparse.SUPPRESS)
    parser.add_argument("--task", choices=["training", "decoding"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child == "keep", args.task, args.cpu_time, args.threads)))
        return

    from benchmarks.bench_model import cpu_description

    runs: dict[str, list[dict]] = {"default": [], "keep": []}
    for round_ in range(args.rounds):
        for kind in ("default", "keep") if round_ % 2 == 0 else ("keep", "default"):
            measured = {}
            for task in ("training", "decoding"):
                command = [sys.executable, __file__, "--child", kind, "--task", task, "--threads", str(args.threads)]
                command += ["--cpu-time"] if args.cpu_time else []
                output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
                measured |= json.loads(output.strip().splitlines()[-1])
            runs[kind].append(measured)
            print(f"round {round_ + 1}, {kind}: done", file=sys.stderr)
    rows = []
    for name in (k for k in runs["default"][0] if k != "allocator"):
        row = {"measurement": name}
        for kind in ("default", "keep"):
            row[f"seconds_{kind}"] = statistics.median(run[name]["seconds"] for run in runs[kind])
            row[f"page_faults_{kind}"] = statistics.median(run[name]["page_faults"] for run in runs[kind])
        row["speedup"] = row["seconds_default"] / row["seconds_keep"]
        rows.append(row)
        print(
            f"{name:34s} glibc default {row['seconds_default']:.3f} s ({row['page_faults_default']:,.0f} faults)  "
            f"freed memory kept {row['seconds_keep']:.3f} s ({row['page_faults_keep']:,.0f} faults)  "
            f"speed-up {row['speedup']:.2f}x"
        )
    machine = cpu_description() | {"threads": args.threads, "clock": "process CPU" if args.cpu_time else "wall"}
    machine["allocator_kept"] = runs["keep"][0]["allocator"]
    if args.json:
        record = {"machine": machine, "command": " ".join(["python", *sys.argv]), "rounds": args.rounds, "rows": rows}
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
