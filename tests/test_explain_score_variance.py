"""explain/score_variance.py (§3.2.1, footnote 4) against closed forms: var(q·k) = d_k, the sampling error
of that estimate, the softmax Jacobian diag(p) - p p^T, and the uniform and one-hot limits."""

import json
import math

import pytest
import torch

from explain.score_variance import (
    main,
    measure,
    sampled_dot_products,
    softmax_jacobian,
    softmax_statistics,
    variance_std_error,
)


def test_dot_products_have_variance_dk_within_sampling_error():
    results = measure(d_ks=(4, 64, 1024), samples=20_000, queries=2, n_keys=2, seed=0)
    for row in results["rows"]:
        d_k, error = row["d_k"], row["variance_std_error"]
        assert error == pytest.approx(math.sqrt((2 * d_k**2 + 6 * d_k) / 20_000))
        assert abs(row["variance"] - d_k) < 4 * error, row  # 4 standard errors
        assert abs(row["mean"]) < 4 * math.sqrt(d_k / 20_000), row  # mean 0, standard error sqrt(d_k / N)


def test_the_sampling_error_of_the_variance_matches_its_closed_form():
    # 400 independent estimates of var(q·k) from 500 pairs each: their spread is sqrt((2 d^2 + 6 d) / 500).
    d_k, samples = 16, 500
    estimates = sampled_dot_products(d_k, (400, samples), torch.Generator().manual_seed(1)).var(dim=1)
    assert estimates.std().item() == pytest.approx(variance_std_error(d_k, samples), rel=0.15)


def test_softmax_jacobian_is_diag_p_minus_p_pT():
    scores = torch.randn(3, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    p = torch.softmax(scores, dim=-1)
    for row in range(3):
        expected = torch.autograd.functional.jacobian(lambda s: torch.softmax(s, dim=-1), scores[row])
        torch.testing.assert_close(softmax_jacobian(p)[row], expected)
        torch.testing.assert_close(softmax_jacobian(p)[row], torch.diag(p[row]) - torch.outer(p[row], p[row]))


def test_uniform_and_one_hot_limits():
    n = 32
    uniform = softmax_statistics(torch.zeros(5, n, dtype=torch.float64))
    assert uniform["max_weight"] == pytest.approx(1 / n)
    assert uniform["entropy"] == pytest.approx(math.log(n))
    assert uniform["jacobian_norm"] == pytest.approx(math.sqrt(n - 1) / n)  # ||diag(p) - p p^T||_F at p = 1/n
    one_hot = softmax_statistics(torch.cat([torch.full((5, 1), 1e3), torch.zeros(5, n - 1)], dim=1).double())
    assert one_hot["max_weight"] == pytest.approx(1.0)
    assert one_hot["entropy"] == pytest.approx(0.0, abs=1e-12)
    assert one_hot["jacobian_norm"] == pytest.approx(0.0, abs=1e-12)


def test_scaling_changes_nothing_at_dk_1_and_keeps_scaled_scores_unsaturated():
    # At d_k = 1 the scale 1/sqrt(d_k) is 1: both softmaxes see the same scores.
    row = measure(d_ks=(1,), samples=100, queries=50, n_keys=8, seed=3)["rows"][0]
    assert row["scaled"] == row["unscaled"]
    # Scaled scores have variance 1 for every d_k (var(q·k) / d_k), so the softmax does not drift to one-hot.
    scaled = [row["scaled"]["max_weight"] for row in measure(d_ks=(4, 1024), samples=100, queries=500, seed=3)["rows"]]
    assert scaled[1] == pytest.approx(scaled[0], abs=0.05)


def test_cli_writes_results_and_figure(tmp_path, capsys):
    json_path, figure = tmp_path / "results.json", tmp_path / "figure.png"
    main(["--samples", "200", "--queries", "20", "--n-keys", "8", "--json", str(json_path), "--figure", str(figure)])
    results = json.loads(json_path.read_text())
    assert [row["d_k"] for row in results["rows"]] == [4, 8, 16, 32, 64, 128, 256, 512, 1024]
    assert results["n_keys"] == 8 and figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "closed form" in capsys.readouterr().out
