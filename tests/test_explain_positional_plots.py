"""`explain.positional_encoding_plots`: it draws the model's own position table (§3.5), and the dot
products between positions equal PE @ PE^T and the closed form sum_i cos(w_i (p - q))."""

from __future__ import annotations

import math

import pytest
import torch

from explain import positional_encoding_plots as plots
from tests.helpers import tiny_model
from tests.train_helpers import one_thread  # noqa: F401  (autouse fixture: one torch thread)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("layout", ["interleaved", "concat"])
def test_the_table_is_the_one_the_models_encoder_adds(layout):
    model = tiny_model(sinusoidal_layout=layout)
    table, description = plots.model_position_table(model, 20)
    assert torch.equal(table, model.model.encoder.embed_positions.table[:20])
    assert description == f"sinusoidal, {layout} layout"


def test_a_learned_table_is_the_models_embedding_weights():
    model = tiny_model(position_embedding_type="learned")
    table, description = plots.model_position_table(model, 10)
    assert torch.equal(table, model.model.encoder.embed_positions.weight[:10].detach())
    assert description == "learned"


def test_dot_products_are_pe_times_pe_transposed_and_depend_only_on_the_offset():
    num_positions, d_model = 40, 16
    table = plots.sinusoidal_position_table(num_positions, d_model)
    dots = plots.position_dot_products(table)
    torch.testing.assert_close(dots, table @ table.T, rtol=0, atol=0)
    # sin(a) sin(b) + cos(a) cos(b) = cos(a - b), summed over the d_model / 2 frequencies w_i = 10000^(-2i/d).
    frequencies = [10000 ** (-2 * i / d_model) for i in range(d_model // 2)]
    expected = torch.tensor(
        [[sum(math.cos(w * (p - q)) for w in frequencies) for q in range(num_positions)] for p in range(num_positions)]
    )
    torch.testing.assert_close(dots, expected, rtol=0, atol=1e-4)
    torch.testing.assert_close(dots.diagonal(), torch.full((num_positions,), d_model / 2), rtol=0, atol=1e-4)


def test_bad_sizes_are_errors_that_name_the_value():
    with pytest.raises(ValueError, match="cannot show 1000"):
        plots.model_position_table(tiny_model(), 1000)
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        plots.position_dot_products(torch.zeros(3))
    with pytest.raises(ValueError, match="marked position 50"):
        plots.plot_position_dot_products(plots.sinusoidal_position_table(10, 8), "unused.png", "x", marked=[50])


def test_command_writes_the_pngs_it_prints_from_a_model_folder(tmp_path, capsys):
    model_dir = tmp_path / "model"
    tiny_model().save_pretrained(model_dir)
    written = plots.main(["--model", str(model_dir), "--positions", "30", "--out", str(tmp_path / "figures")])
    assert [path.name for path in written] == ["positional-encoding.png", "positional-encoding-dot-products.png"]
    assert capsys.readouterr().out.splitlines() == [str(path) for path in written]
    for path in written:
        assert path.read_bytes().startswith(PNG_SIGNATURE) and path.stat().st_size > 1000


def test_command_draws_the_packages_table_for_a_given_size(tmp_path):
    written = plots.main(["--d-model", "512", "--positions", "50", "--out", str(tmp_path), "--prefix", "base"])
    assert [path.name for path in written] == ["base.png", "base-dot-products.png"]
    assert all(path.read_bytes().startswith(PNG_SIGNATURE) for path in written)


@pytest.mark.parametrize("flags", [["--d-model", "15"], ["--d-model", "16", "--positions", "0"]])
def test_bad_flags_are_refused(flags, tmp_path, capsys):
    with pytest.raises(SystemExit):
        plots.main([*flags, "--out", str(tmp_path)])
    assert "must be" in capsys.readouterr().err
