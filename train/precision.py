"""Which arithmetic a training run uses on this CPU: fp32, or bf16 autocast where the CPU has it.

On CPUs with native bf16 matrix instructions (`avx512_bf16`, or AMX), `torch.autocast("cpu",
torch.bfloat16)` runs the matrix multiplies in bf16 and trains the small preset about 2-3x faster
(`benchmarks/bench_model.py`), while the weights, the optimizer state and the loss stay in fp32
(the Trainer's `bf16=True`). Without those instructions torch emulates bf16 and it is far slower
than fp32 (`benchmarks/bench_matmul.py`), so `precision: auto` (the default) picks bf16 only where
the CPU has it, and the run logs which one it took. Validation loss after a fixed number of steps
is within seed noise of fp32 (`benchmarks/bf16_quality.py`, results in `benchmarks/README.md`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from hf_vanilla_transformer import onednn
from train.allocator import allocator_state
from train.onednn_cache import primitive_cache_state

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16")
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags() -> set[str]:
    """The CPU feature flags the kernel reports (Linux); empty where /proc/cpuinfo does not exist. Read once, by the
    model package (`hf_vanilla_transformer.onednn.cpu_flags`, which chooses its decoding route by them too)."""
    return set(onednn.cpu_flags())


def native_bf16(flags: set[str] | None = None) -> bool:
    """True where the CPU multiplies bf16 matrices in hardware (AVX-512 BF16 or AMX)."""
    flags = cpu_flags() if flags is None else flags
    return any(flag in flags for flag in NATIVE_BF16_FLAGS)


VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
"""CPU flags of instructions that add u8 x s8 products straight into 32-bit sums (VNNI, AMX)."""


def int8_sums_saturate(flags: set[str] | None = None) -> bool:
    """True on x86 CPUs without VNNI or AMX. There, int8 matrix products (oneDNN's u8s8 GEMM, CTranslate2's int8
    backend when it does not use MKL) add pairs of u8 x s8 products in 16 bits, which can saturate (oneDNN's guide,
    "Nuances of int8 Computations"), so int8 translations stray further from fp32: on a trained Multi30k model,
    -0.42 BLEU and 57% identical translations on an AVX2-only AMD EPYC, against -0.03 and 87% on an AVX-512 one
    with VNNI (`benchmarks/results/export-check-avx2-session15.json`, `export-check.json`). False where the flags
    are unknown (no /proc/cpuinfo)."""
    flags = cpu_flags() if flags is None else flags
    x86 = "avx2" in flags or "sse4_2" in flags
    return x86 and not any(flag in flags for flag in VNNI_FLAGS)


def choose_precision(setting: str = "auto", flags: set[str] | None = None) -> str:
    """`"fp32"` or `"bf16"` for a run whose config says `precision: setting`; logs the choice and why."""
    if setting not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {setting!r}")
    has_bf16 = native_bf16(flags)
    if setting == "auto":
        chosen = "bf16" if has_bf16 else "fp32"
        if has_bf16:
            present = flags if flags is not None else cpu_flags()
            reason = "the CPU has " + ", ".join(flag for flag in NATIVE_BF16_FLAGS if flag in present)
        else:
            reason = "the CPU has no native bf16 matrix instructions"
        arithmetic = "bf16 autocast" if chosen == "bf16" else "fp32, no autocast"
        logger.info("precision: %s (auto: %s)", arithmetic, reason)
        return chosen
    if setting == "bf16" and not has_bf16:
        logger.warning(
            "precision: bf16 was asked for, but this CPU emulates bf16: expect it to be much slower than fp32"
        )
    logger.info("precision: %s (set in the training config)", setting)
    return setting


def machine_description() -> dict:
    """What a result was measured on: CPU model and relevant flags, threads, torch and transformers."""
    import platform

    import torch
    import transformers

    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = cpu_flags()
    return {
        "cpu": name,
        "cpu_flags": [f for f in ("avx2", "avx512f", *NATIVE_BF16_FLAGS) if f in flags],
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "memory_allocator": allocator_state(),
        "onednn_primitive_cache": primitive_cache_state(),
    }
