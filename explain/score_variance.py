"""Why the dot products are scaled by 1 / sqrt(d_k) (§3.2.1, footnote 4), measured.

The paper: "We suspect that for large values of d_k, the dot products grow large in magnitude, pushing
the softmax function into regions where it has extremely small gradients. To illustrate why the dot
products get large, assume that the components of q and k are independent random variables with mean 0
and variance 1. Then their dot product, q·k = sum_i q_i k_i, has mean 0 and variance d_k."

    python -m explain.score_variance [--n-keys 32] [--samples 20000] [--queries 1000] [--seed 0]

For each d_k in 4, 8, ..., 1024, with q and k drawn from N(0, I_{d_k}):

1. variance: var(q·k) of `samples` independent pairs against the closed form d_k. Its sampling error
   follows from the fourth moment E[(q·k)^4] = 3 d_k^2 + 6 d_k (E[q_i^4 k_i^4] = 9):
   std(var estimate) ≈ sqrt((2 d_k^2 + 6 d_k) / samples).
2. saturation: `queries` queries, each against `n_keys` keys; the softmax of the scores q·k_j with and
   without the 1/sqrt(d_k) scale. The mean largest weight (1/n for uniform weights, 1 for one-hot) and
   the mean entropy (log n uniform, 0 one-hot).
3. gradients: backpropagation through the softmax multiplies the gradient at the weights by its
   Jacobian J = diag(p) - p p^T to give the gradient at the scores. Its Frobenius norm is
   sqrt(E ||J g||^2) for a random upstream gradient g ~ N(0, I): sqrt(n-1)/n for uniform weights, 0 for
   one-hot ones. As the unscaled softmax saturates, the gradient reaching the scores (and through them
   W^Q and W^K) vanishes for the typical query (the median norm); with the scale, the scores keep
   variance 1 and nothing changes with d_k.

Prints a table and writes the numbers (`explain/results/score-variance.json`) and a figure
(`docs/figures/score-variance.png`). What the choice does to training is an ablation of the model
option `attention_score` (`dot_product`, `additive`; see `hf_vanilla_transformer/attention.py`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
D_KS = (4, 8, 16, 32, 64, 128, 256, 512, 1024)
CHUNK = 2_000_000  # floats per sampled block: bounds memory at d_k = 1024


def sampled_dot_products(d_k: int, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """q·k for independent q, k ~ N(0, I_{d_k}), one per element of `shape` (float64)."""
    count = math.prod(shape)
    rows = max(1, CHUNK // d_k)
    blocks = []
    for start in range(0, count, rows):
        size = min(rows, count - start)
        q = torch.randn(size, d_k, generator=generator, dtype=torch.float64)
        k = torch.randn(size, d_k, generator=generator, dtype=torch.float64)
        blocks.append((q * k).sum(-1))
    return torch.cat(blocks).reshape(shape)


def variance_std_error(d_k: int, samples: int) -> float:
    """Standard deviation of the sample variance of `samples` dot products: sqrt((E[s^4] - d_k^2) / N)."""
    return math.sqrt((2 * d_k**2 + 6 * d_k) / samples)


def softmax_jacobian(p: torch.Tensor) -> torch.Tensor:
    """d softmax(s) / d s = diag(p) - p p^T, for weights p (..., n) -> (..., n, n)."""
    return torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)


def softmax_statistics(scores: torch.Tensor) -> dict[str, float]:
    """scores (Q, n) -> over the Q queries: mean largest weight, mean entropy (nats), and the mean and median
    Frobenius norm of the softmax's Jacobian (the median is the typical query; the mean is carried by the few
    queries whose two best scores happen to be close)."""
    p = torch.softmax(scores, dim=-1)
    entropy = -(p * torch.log(p.clamp_min(torch.finfo(p.dtype).tiny))).sum(-1)
    jacobian_norm = torch.linalg.matrix_norm(softmax_jacobian(p))  # Frobenius
    return {
        "max_weight": p.max(-1).values.mean().item(),
        "entropy": entropy.mean().item(),
        "jacobian_norm": jacobian_norm.mean().item(),
        "jacobian_norm_median": jacobian_norm.median().item(),
    }


def measure(
    d_ks: tuple[int, ...] = D_KS, samples: int = 20_000, queries: int = 1_000, n_keys: int = 32, seed: int = 0
) -> dict:
    """The three measurements of the module docstring, one row per d_k."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for d_k in d_ks:
        pairs = sampled_dot_products(d_k, (samples,), generator)
        scores = sampled_dot_products(d_k, (queries, n_keys), generator)  # one query (row) against n keys
        rows.append(
            {
                "d_k": d_k,
                "mean": pairs.mean().item(),
                "variance": pairs.var().item(),
                "variance_closed_form": d_k,
                "variance_std_error": variance_std_error(d_k, samples),
                "scaled": softmax_statistics(scores / math.sqrt(d_k)),
                "unscaled": softmax_statistics(scores),
            }
        )
    return {
        "command": "python -m explain.score_variance",
        "seed": seed,
        "samples": samples,
        "queries": queries,
        "n_keys": n_keys,
        "uniform_weights": {
            "max_weight": 1 / n_keys,
            "entropy": math.log(n_keys),
            "jacobian_norm": math.sqrt(n_keys - 1) / n_keys,
        },
        "torch": torch.__version__,
        "rows": rows,
    }


def table(results: dict) -> str:
    n = results["n_keys"]
    lines = [
        f"q, k ~ N(0, I); var(q·k) over {results['samples']:,} pairs; softmax over {n} keys, "
        f"mean of {results['queries']:,} queries (uniform: max weight {1 / n:.3f}, entropy {math.log(n):.2f}, "
        f"|J| {math.sqrt(n - 1) / n:.3f})",
        f"{'d_k':>5} {'var(q·k)':>10} {'closed form':>11} {'± std err':>9} | "
        f"{'max weight':>10} {'entropy':>7} {'|J| med':>7} (scaled) | "
        f"{'max weight':>10} {'entropy':>7} {'|J| mean':>9} {'|J| median':>10} (unscaled)",
    ]
    for row in results["rows"]:
        s, u = row["scaled"], row["unscaled"]
        lines.append(
            f"{row['d_k']:>5} {row['variance']:>10.2f} {row['variance_closed_form']:>11} "
            f"{row['variance_std_error']:>9.2f} | "
            f"{s['max_weight']:>10.3f} {s['entropy']:>7.3f} {s['jacobian_norm_median']:>7.3f}          | "
            f"{u['max_weight']:>10.3f} {u['entropy']:>7.3f} {u['jacobian_norm']:>9.2e} "
            f"{u['jacobian_norm_median']:>10.2e}"
        )
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, n = results["rows"], results["n_keys"]
    d_k = [row["d_k"] for row in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), layout="constrained")

    ax = axes[0]
    ax.plot(d_k, d_k, color="grey", lw=1, label="closed form: d_k")
    ax.errorbar(
        d_k,
        [row["variance"] for row in rows],
        yerr=[2 * row["variance_std_error"] for row in rows],
        fmt="o",
        ms=4,
        label=f"measured ({results['samples']:,} pairs, ±2 s.e.)",
    )
    ax.set(xscale="log", yscale="log", xlabel="d_k", ylabel="var(q·k)", title="q·k has variance d_k")
    ax.legend(fontsize=8)

    ax = axes[1]
    for key, color in (("scaled", "C0"), ("unscaled", "C1")):
        label = "q·k / sqrt(d_k)" if key == "scaled" else "q·k"
        max_weight = [row[key]["max_weight"] for row in rows]
        entropy = [row[key]["entropy"] / math.log(n) for row in rows]
        ax.plot(d_k, max_weight, "-o", color=color, ms=4, label=f"max weight, {label}")
        ax.plot(d_k, entropy, "--s", color=color, ms=4, label=f"entropy / log n, {label}")
    ax.set(xscale="log", ylim=(-0.03, 1.03), xlabel="d_k", title=f"softmax over n = {n} keys")
    ax.legend(fontsize=8)

    ax = axes[2]
    for key, color in (("scaled", "C0"), ("unscaled", "C1")):
        label = "q·k / sqrt(d_k)" if key == "scaled" else "q·k"
        median = [row[key]["jacobian_norm_median"] for row in rows]
        ax.plot(d_k, median, "-o", color=color, ms=4, label=f"median, {label}")
        ax.plot(d_k, [row[key]["jacobian_norm"] for row in rows], ":", color=color, label=f"mean, {label}")
    ax.axhline(results["uniform_weights"]["jacobian_norm"], color="grey", lw=1, label="uniform weights")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="d_k",
        ylabel="‖diag(p) − p pᵀ‖_F",
        title=f"gradient through the softmax ({results['queries']:,} queries)",
    )
    ax.legend(fontsize=8)

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=20_000, help="dot products for each variance")
    parser.add_argument("--queries", type=int, default=1_000, help="queries for each softmax statistic")
    parser.add_argument("--n-keys", type=int, default=32, help="keys each query attends over")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "explain" / "results" / "score-variance.json")
    parser.add_argument("--figure", type=Path, default=REPO_ROOT / "docs" / "figures" / "score-variance.png")
    args = parser.parse_args(argv)
    if min(args.samples, args.queries) < 2 or args.n_keys < 2:
        parser.error("--samples, --queries and --n-keys must be at least 2")

    results = measure(samples=args.samples, queries=args.queries, n_keys=args.n_keys, seed=args.seed)
    print(table(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.figure)
    print(f"wrote {args.json} and {args.figure}", file=sys.stderr)


if __name__ == "__main__":
    main()
