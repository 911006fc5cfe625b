"""Raw matrix-multiply throughput of this machine's CPU in fp32 and bf16 (GFLOP/s), per thread count.

    python benchmarks/bench_matmul.py

Why the recipe trains in fp32: on CPUs without AVX-512 BF16 / AMX, torch emulates bf16 matmuls
and they run far slower than fp32. The ratio bf16 / fp32 is printed for each thread count.
"""

from __future__ import annotations

import time

import torch


def gflops(dtype: torch.dtype, threads: int, m: int = 2048, k: int = 1024, n: int = 1024, repeats: int = 10) -> float:
    torch.set_num_threads(threads)
    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    for _ in range(2):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * m * k * n * repeats / (time.perf_counter() - start) / 1e9


def peak_gflops(dtype: torch.dtype, threads: int, trials: int = 7, repeats: int = 10) -> float:
    """The best of `trials` timings of `gflops`: a peak. One timing can land far below it on a virtual machine
    (one 2-core AVX2 EPYC gave 44, then 76-148 GFLOP/s from call to call), and a peak measured low makes every
    MFU computed against it too high, even above 1."""
    return max(gflops(dtype, threads, repeats=repeats) for _ in range(trials))


def main() -> None:
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}")
    print(f"{'threads':>7s} {'fp32 GFLOP/s':>13s} {'bf16 GFLOP/s':>13s} {'bf16/fp32':>9s}")
    for threads in sorted({1, torch.get_num_threads()}):
        fp32 = gflops(torch.float32, threads)
        bf16 = gflops(torch.bfloat16, threads, repeats=1)
        print(f"{threads:7d} {fp32:13.1f} {bf16:13.1f} {bf16 / fp32:9.3f}")


if __name__ == "__main__":
    main()
