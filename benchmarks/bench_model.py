"""Speed and memory of the model against transformers' MarianMTModel, measured in the same run.

    python benchmarks/bench_model.py                  # small and base presets
    python benchmarks/bench_model.py --quick          # small only, fewer rounds
    python benchmarks/bench_model.py --json benchmarks/results/this-machine.json
    python benchmarks/bench_model.py --decoding-only  # greedy / beam-4 rows and ablations, about 2 minutes

MarianMTModel of the same architecture (post-LN, scaled tied embeddings, sinusoidal positions, ReLU,
biased projections: our model with `attention_bias=True, sinusoidal_layout="concat"`) is what a
user would pick instead. Both start from random weights and see identical batches, in interleaved
rounds (A B A B ...), and the medians are compared: every row is a ratio measured in one run on one
machine, never an absolute target. Timings vary between machines and runs; the CPU, its flags and
torch's thread count are printed with the results.

Rows:
- a training step (forward, backward, Adam) on 200 sentence pairs of 8-32 tokens, in target tokens
  per second, for our model in fp32 and with bf16 autocast (`torch.autocast("cpu", torch.bfloat16)`,
  fp32 master weights) against Marian in fp32, and ours in fp32 with `skip_padding=False` (every padded
  position computed, as Marian does); MFU = the FLOPs a variant computes (counted by torch's FlopCounterMode)
  per second over the matmul peak of the same dtype measured in this run;
- peak memory (resident set) of training steps, each model in a fresh process;
- greedy and beam-4 decoding of 64 sentences, exactly 25 new tokens each, in sentences per second
  (`--decoding-only` adds our model with one fast path switched off at a time); on a CPU with native
  bf16 also our model with its weights in bf16 (`translate --dtype bfloat16`; its BLEU against fp32:
  `bf16_decoding_quality.py`).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import MarianConfig, MarianMTModel
from transformers.cache_utils import DynamicCache

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import hf_vanilla_transformer as hvt  # noqa: E402
from benchmarks.bench_matmul import peak_gflops  # noqa: E402
from train.allocator import allocator_state, keep_freed_memory  # noqa: E402
from train.baseline import SIZE_FIELDS  # noqa: E402  (the fields Marian and our config share)
from train.onednn_cache import make_room_for_batch_shapes, primitive_cache_state  # noqa: E402
from train.precision import native_bf16  # noqa: E402

VOCAB = 8000
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
ISA_CAPS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")
"""Environment variables that make torch, oneDNN and MKL use older instructions than the CPU has
(`ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2`: an AVX2-only CPU)."""


def cpu_description() -> dict:
    flags, name = set(), platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
    except OSError:
        pass
    description = {"cpu": name, "flags": [f for f in CPU_FLAGS if f in flags], "threads": torch.get_num_threads()}
    # The instruction set torch's kernels use, and any cap put on it (to measure an AVX2-only CPU on a newer one).
    description["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    caps = {name: os.environ[name] for name in ISA_CAPS if os.environ.get(name)}
    return description | ({"isa_caps": caps} if caps else {})


def bf16_rows() -> bool:
    """Whether to measure bf16 rows: the CPU multiplies bf16 natively and no cap (`ISA_CAPS`) hides it. Emulated
    bf16 is hundreds of times slower than fp32 (`bench_matmul.py`), which no recipe would choose."""
    return native_bf16() and not any(os.environ.get(name) for name in ISA_CAPS)


def sizes(preset: str, vocab_size: int = VOCAB) -> dict:
    """A preset's sizes in the field names MarianConfig shares with ours (one source: the presets)."""
    config = hvt.VanillaTransformerConfig.from_preset(preset, vocab_size=vocab_size)
    return {name: getattr(config, name) for name in SIZE_FIELDS} | {
        "vocab_size": vocab_size,
        "max_position_embeddings": 512,
    }


def small_sizes(vocab_size: int = VOCAB) -> dict:
    return sizes("small", vocab_size)


def build(kind: str, preset: str, dropout: float = 0.1, attention: str = "sdpa", skip_padding: bool = True):
    torch.manual_seed(0)
    if kind == "marian":
        return MarianMTModel(
            MarianConfig(
                **sizes(preset),
                activation_function="relu",
                scale_embedding=True,
                dropout=dropout,
                pad_token_id=0,
                eos_token_id=2,
                decoder_start_token_id=1,
                forced_eos_token_id=None,
            )
        )
    config = hvt.VanillaTransformerConfig(
        **sizes(preset),
        attention_bias=True,
        sinusoidal_layout="concat",
        dropout=dropout,
        attn_implementation=attention,
        skip_padding=skip_padding,
    )
    return hvt.VanillaTransformerForConditionalGeneration(config)


def training_batch(pairs: int = 200, seed: int = 0) -> dict:
    """`pairs` sentence pairs of 8-32 tokens, padded to the longest (lengths uniform)."""
    g = torch.Generator().manual_seed(seed)
    src_len = torch.randint(8, 33, (pairs,), generator=g)
    tgt_len = torch.randint(8, 33, (pairs,), generator=g)
    input_ids = torch.zeros(pairs, int(src_len.max()), dtype=torch.long)
    labels = torch.full((pairs, int(tgt_len.max())), -100, dtype=torch.long)
    for i in range(pairs):
        input_ids[i, : src_len[i]] = torch.randint(4, VOCAB, (int(src_len[i]),), generator=g)
        labels[i, : tgt_len[i]] = torch.randint(4, VOCAB, (int(tgt_len[i]),), generator=g)
    return {"input_ids": input_ids, "attention_mask": (input_ids != 0).long(), "labels": labels}


def train_step(model, batch, bf16: bool = False):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    model.train()

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def step_flops(model, batch) -> int:
    with FlopCounterMode(display=False) as counter:
        model.train()
        model(**batch).loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def interleaved(fns: dict, rounds: int, warmup: int = 1, clock=time.perf_counter) -> dict:
    """Median seconds of each function, run in interleaved rounds so that drift hits all alike.

    `clock` is wall time by default; `time.process_time` (CPU seconds of this process, all its threads)
    leaves out the time other processes take from a shared machine."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = clock()
            fn()
            times[name].append(clock() - start)
    return {name: statistics.median(values) for name, values in times.items()}


PEAK_MEMORY_CHILD = """
import re, sys, torch
sys.path.insert(0, sys.argv[1])
from benchmarks.bench_model import build, training_batch, train_step
bf16 = sys.argv[4] == "bf16"
model = build(sys.argv[2], sys.argv[3], attention="eager" if bf16 else "sdpa")
step = train_step(model, training_batch(), bf16=bf16)
status = lambda key: int(re.search(key + r":\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
before = status("VmRSS")
open("/proc/self/clear_refs", "w").write("5")  # resets the peak (VmHWM) to the current resident set
for _ in range(3):
    step()
print(status("VmHWM") - before)
"""


def peak_training_memory_mib(kind: str, preset: str, precision: str) -> float:
    """Peak resident set during 3 training steps above the resident set before them (model, batch,
    optimizer built), in a fresh process: activations, gradients, optimizer state. Linux only."""
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run(
        [sys.executable, "-c", PEAK_MEMORY_CHILD, root, kind, preset, precision],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def bench_training(preset: str, rounds: int, peaks: dict) -> list[dict]:
    batch = training_batch()
    tokens = int((batch["labels"] != -100).sum())
    # As training runs them (train.train.TRAINING_ATTENTION): SDPA in fp32, eager attention under bf16.
    # skip_padding=False: every padded position computed, as Marian does (what `config.skip_padding` buys).
    models = {
        "marian": build("marian", preset),
        "ours": build("ours", preset),
        "ours_padded": build("ours", preset, skip_padding=False),
    }
    if bf16_rows():
        models["ours_bf16"] = build("ours", preset, attention="eager")
    # FLOPs each variant really computes: the whole padded batch (as Marian), or its real tokens only.
    padded_flops, real_flops = step_flops(models["ours_padded"], batch), step_flops(models["ours"], batch)
    fns = {
        "marian fp32": train_step(models["marian"], batch),
        "ours fp32": train_step(models["ours"], batch),
        "ours fp32, padding computed": train_step(models["ours_padded"], batch),
    }
    if "ours_bf16" in models:
        fns["ours bf16 autocast"] = train_step(models["ours_bf16"], batch, bf16=True)
    seconds = interleaved(fns, rounds)
    rows = []
    for name, t in seconds.items():
        peak = peaks["bf16"] if "bf16" in name else peaks["fp32"]
        rows.append(
            {
                "measurement": f"training step, {preset}",
                "variant": name,
                "seconds": t,
                "target_tokens_per_s": tokens / t,
                "ratio_vs_marian_fp32": seconds["marian fp32"] / t,
                "mfu": (padded_flops if name.startswith("marian") or "padding" in name else real_flops)
                / t
                / (peak * 1e9),
            }
        )
    for precision in ("fp32", "bf16") if bf16_rows() else ("fp32",):
        for kind in ("marian", "ours"):
            if kind == "marian" and precision == "bf16":
                continue
            rows.append(
                {
                    "measurement": f"peak memory of a training step, {preset}",
                    "variant": f"{kind} {precision}",
                    "peak_rss_growth_mib": peak_training_memory_mib(kind, preset, precision),
                }
            )
    return rows


@contextlib.contextmanager
def sdpa_for_steps():
    """Cached decoding steps call torch's SDPA kernel, as every other attention call does."""
    saved = hvt.attention.DECODE_STEP_MAX_QUERIES
    hvt.attention.DECODE_STEP_MAX_QUERIES = 0
    try:
        yield
    finally:
        hvt.attention.DECODE_STEP_MAX_QUERIES = saved


@contextlib.contextmanager
def transformers_loops(model):
    """Decoding in transformers' loops (`generate()` without `greedy_search.py` / `beam_search.py`: every sentence
    stays to the end)."""
    model.use_own_decoding_loops = False
    try:
        yield
    finally:
        model.use_own_decoding_loops = True


def cross_cache_per_beam(config):
    """Our beam-search cache with the cross-attention K/V kept for every beam row (the fold switched off)."""
    self_attention = hvt.beam_cache.beam_self_attention_cache(config)
    return hvt.beam_cache.BeamSearchCache(self_attention, DynamicCache(config=config), beams_per_source=1)


def self_attention_reordered_by_transformers(config, beams: int):
    """Our beam-search cache with transformers' own self-attention layers (`DynamicLayer`: reorder, then append:
    two copies per step) instead of `ReorderOnUpdateLayer` (one)."""
    return hvt.beam_cache.BeamSearchCache(DynamicCache(config=config), DynamicCache(config=config), beams)


def every_sum_ranked(log_probs: torch.Tensor, beam_scores: torch.Tensor, count: int):
    """transformers' ranking of a beam-search step (`_get_top_k_continuations`): every beam's score added to all V
    of its log-probabilities (n, k, V), and the k * V sums of each sentence ranked; what
    `beam_search.best_candidates` returns, computed over every sum."""
    n, k, vocab = log_probs.shape
    sums = (log_probs + beam_scores[:, :, None]).view(n, k * vocab)
    top_scores, top = torch.topk(sums, count)
    return top_scores, top // vocab, top % vocab


@contextlib.contextmanager
def every_sum_ranked_in_beam_search():
    """`beam_search.py` ranks every k * V sum of a step, as transformers does (`every_sum_ranked`)."""
    saved = hvt.beam_search.best_candidates
    hvt.beam_search.best_candidates = every_sum_ranked
    try:
        yield
    finally:
        hvt.beam_search.best_candidates = saved


ROUTE_ROWS = {
    "none": "oneDNN off",
    "pre-softmax": "oneDNN for the pre-softmax layer only",
    "all": "oneDNN for all layers",
}
"""The ablation row of each oneDNN route (`onednn.ROUTES`)."""


def bench_decoding(preset: str, rounds: int, ablations: bool = False, clock=time.perf_counter) -> list[dict]:
    """Greedy and beam-4 decoding of 64 sentences of 8-32 tokens, exactly 25 new tokens each.

    With `ablations`, also our model with one fast path switched off at a time (`benchmarks/README.md`,
    "What each change bought"): each oneDNN route this CPU does not take by default (`onednn.route()`: F.linear for
    every linear layer, oneDNN for the pre-softmax layer only, or for every layer); torch's SDPA kernel for
    the cached steps too (`attention.DECODE_STEP_MAX_QUERIES = 0`); the encoder computing the source's
    padding (`skip_padding=False`); the causal mask built at every step
    (a target mask of ones is passed); transformers' loops instead of `greedy_search.py`'s / `beam_search.py`'s;
    and for beam search the cross-attention K/V stored per beam row instead of once per sentence, and the
    self-attention cache reordered and then grown in two copies per step (transformers' `DynamicLayer`) instead of
    one (`ReorderOnUpdateLayer`), and each step's candidates ranked over every k x V sum (`every_sum_ranked`, as
    transformers ranks them) instead of each beam's 2k best first (`beam_search.best_candidates`). Rows that pass
    their own cache or a target mask decode in transformers' loops (this package's loops cover plain calls only):
    compare the two cache rows with the "transformers' loop" row. With exactly 25 new tokens for every sentence, no
    sentence leaves the batch early here; `bench_translation.py` has real lengths.
    """
    g = torch.Generator().manual_seed(1)
    lengths = torch.randint(8, 33, (64,), generator=g)
    input_ids = torch.zeros(64, int(lengths.max()), dtype=torch.long)
    for i, n in enumerate(lengths.tolist()):
        input_ids[i, :n] = torch.randint(4, VOCAB, (n,), generator=g)
    source = {"input_ids": input_ids, "attention_mask": (input_ids != 0).long()}
    ours, marian = build("ours", preset).eval(), build("marian", preset).eval()
    ours_padded = build("ours", preset, skip_padding=False).eval()  # the same weights; the encoder computes padding
    # The same weights in bf16 (`translate --dtype bfloat16`), on CPUs that multiply bf16 natively.
    ours_bf16 = build("ours", preset).eval().to(torch.bfloat16) if bf16_rows() else None
    rows = []
    for beams in (1, 4):
        fixed = dict(num_beams=beams, max_new_tokens=25, min_new_tokens=25, do_sample=False)

        def run(model, fixed=fixed, context=contextlib.nullcontext, new_cache=None, **extra):
            def decode():
                cache = {hvt.compat.CACHE_NAME: new_cache()} if new_cache else {}
                with context():
                    return model.generate(**source, **fixed, **extra, **cache)

            return decode

        variants = {"marian": run(marian), "ours": run(ours, length_penalty_form="hf")}
        if ours_bf16 is not None:
            variants["ours, bf16 weights"] = run(ours_bf16, length_penalty_form="hf")
        if ablations:
            # The linear routes this CPU does not take by default (`onednn.route()`): F.linear (MKL) everywhere, as
            # Marian's layers; oneDNN with packed weights for the pre-softmax layer only; or for every layer.
            for route in hvt.onednn.ROUTES:
                if route != hvt.onednn.route():
                    variants[f"ours, {ROUTE_ROWS[route]}"] = run(
                        ours, context=functools.partial(hvt.onednn.prefer_onednn, route), length_penalty_form="hf"
                    )
            variants["ours, SDPA kernel for steps"] = run(ours, context=sdpa_for_steps, length_penalty_form="hf")
            variants["ours, padding computed"] = run(ours_padded, length_penalty_form="hf")
            # A target mask (all ones) makes every step build transformers' causal mask again.
            target_mask = torch.ones(64, 1, dtype=torch.long)
            variants["ours, causal mask each step"] = run(
                ours, length_penalty_form="hf", decoder_attention_mask=target_mask
            )
            variants["ours, transformers' loop"] = run(
                ours, context=functools.partial(transformers_loops, ours), length_penalty_form="hf"
            )
            if beams > 1:
                variants["ours, every k x V sum ranked"] = run(
                    ours, context=every_sum_ranked_in_beam_search, length_penalty_form="hf"
                )
                config = ours.config.get_text_config(decoder=True)
                variants["ours, cross K/V per beam"] = run(
                    ours, new_cache=functools.partial(cross_cache_per_beam, config), length_penalty_form="hf"
                )
                variants["ours, self-attn reorder then append"] = run(
                    ours,
                    new_cache=functools.partial(self_attention_reordered_by_transformers, config, beams),
                    length_penalty_form="hf",
                )
        with torch.inference_mode():
            seconds = interleaved(variants, rounds, warmup=1, clock=clock)
        for name, t in seconds.items():
            rows.append(
                {
                    "measurement": f"{'greedy' if beams == 1 else 'beam-4'} decoding, {preset}, 64 x 25 tokens",
                    "variant": name,
                    "seconds": t,
                    "sentences_per_s": 64 / t,
                    "ratio_vs_marian": seconds["marian"] / t,
                }
            )
    return rows


def print_rows(rows: list[dict], widths: tuple[int, int] = (45, 20)) -> None:
    """One line per results row: its measurement, its variant and the other fields (floats to 3 places)."""
    for row in rows:
        details = {
            k: round(v, 3) if isinstance(v, float) else v for k, v in row.items() if k not in ("measurement", "variant")
        }
        print(f"{row['measurement']:{widths[0]}s} {row['variant']:{widths[1]}s} {details}")


def add_process_options(parser: argparse.ArgumentParser) -> None:
    """`--keep-freed-memory` and `--onednn-cache-room`, read by `apply_process_options` (shared with
    `bench_translation.py` and `profile_decoding.py`)."""
    parser.add_argument(
        "--keep-freed-memory",
        action="store_true",
        help="glibc keeps freed memory for reuse in this process, as the project's CLIs do (train/allocator.py); "
        "default: the C library's default, as a plain Hugging Face user runs",
    )
    parser.add_argument(
        "--onednn-cache-room",
        action="store_true",
        help="oneDNN keeps the kernels of every shape in this process, as the project's CLIs do "
        "(train/onednn_cache.py); default: oneDNN's default cache of 1,024. Only oneDNN's users are affected: our "
        "model's fp32 decoding and bf16 matrix products, not fp32 F.linear (MKL)",
    )


def apply_process_options(args: argparse.Namespace) -> dict[str, str]:
    """Apply `--keep-freed-memory` / `--onednn-cache-room` if given (before anything uses oneDNN); the process's
    settings, for the results."""
    if args.keep_freed_memory:
        keep_freed_memory()
    if args.onednn_cache_room:
        make_room_for_batch_shapes()
    return {"memory_allocator": allocator_state(), "onednn_primitive_cache": primitive_cache_state()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small preset only, 3 rounds")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--decoding-only",
        action="store_true",
        help="only the decoding rows, with ablations (one fast path off at a time); small preset unless --presets",
    )
    parser.add_argument("--presets", nargs="+", choices=["small", "base"], help="presets to measure")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 5, 3 with --quick)")
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="time decoding in process CPU seconds instead of wall time (a shared machine; best with 1 thread)",
    )
    add_process_options(parser)
    args = parser.parse_args()
    process = apply_process_options(args)
    rounds = args.rounds or (3 if args.quick else 5)
    presets = args.presets or (["small"] if args.quick or args.decoding_only else ["small", "base"])
    machine = cpu_description() | {"torch": torch.__version__, "transformers": hvt.compat.INSTALLED_TRANSFORMERS.public}
    machine["decoding_clock"] = "process CPU time" if args.cpu_time else "wall time"
    machine |= process
    threads = torch.get_num_threads()
    if not args.decoding_only:
        peaks = {"fp32": peak_gflops(torch.float32, threads)}
        if bf16_rows():
            peaks["bf16"] = peak_gflops(torch.bfloat16, threads, trials=3, repeats=3)
        torch.set_num_threads(threads)
        machine["matmul_peak_gflops"] = peaks
    print(json.dumps(machine))
    rows = []
    for preset in presets:
        if not args.decoding_only:
            rows += bench_training(preset, rounds, peaks)
        clock = time.process_time if args.cpu_time else time.perf_counter
        rows += bench_decoding(preset, rounds, ablations=args.decoding_only, clock=clock)
    print_rows(rows)
    above_peak = [f"{row['measurement']} / {row['variant']}" for row in rows if row.get("mfu", 0.0) > 1.0]
    if above_peak:
        machine["mfu_unreliable"] = (
            f"MFU above 1 for {', '.join(above_peak)}: the matmul peak measured at the start "
            f"({machine['matmul_peak_gflops']}) is below what the models reached, so every MFU here is too high"
        )
        print(f"WARNING: {machine['mfu_unreliable']}", file=sys.stderr)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"machine": machine, "command": " ".join(sys.argv), "rows": rows}, indent=2) + "\n"
        )


if __name__ == "__main__":
    main()
