"""§3.5: the sinusoidal table equals the closed form; layouts; clear errors for long inputs."""

import math

import pytest
import torch

from hf_vanilla_transformer.positional_encoding import sinusoidal_table
from tests.helpers import tiny_model


def closed_form(pos: int, dim: int, d_model: int) -> float:
    i = dim // 2
    angle = pos / 10000 ** (2 * i / d_model)
    return math.sin(angle) if dim % 2 == 0 else math.cos(angle)


def test_interleaved_table_is_the_papers_formula():
    d_model, positions = 16, 50
    table = sinusoidal_table(positions, d_model, "interleaved")
    expected = torch.tensor([[closed_form(p, j, d_model) for j in range(d_model)] for p in range(positions)])
    torch.testing.assert_close(table, expected, rtol=0, atol=1e-6)


def test_concat_layout_is_sines_then_cosines():
    d_model = 16
    interleaved = sinusoidal_table(40, d_model, "interleaved")
    concat = sinusoidal_table(40, d_model, "concat")
    torch.testing.assert_close(concat[:, : d_model // 2], interleaved[:, 0::2], rtol=0, atol=0)
    torch.testing.assert_close(concat[:, d_model // 2 :], interleaved[:, 1::2], rtol=0, atol=0)


def test_relative_position_is_a_linear_function():
    # §3.5: "for any fixed offset k, PE_{pos+k} can be represented as a linear function of PE_pos".
    d_model, k = 8, 3
    table = sinusoidal_table(30, d_model, "interleaved").double()
    blocks = []
    for i in range(d_model // 2):
        w = 1 / 10000 ** (2 * i / d_model)
        c, s = math.cos(k * w), math.sin(k * w)
        blocks.append(torch.tensor([[c, -s], [s, c]], dtype=torch.float64))
    rotation = torch.block_diag(*blocks)
    torch.testing.assert_close(table[:-k] @ rotation, table[k:], rtol=0, atol=1e-6)


def test_table_is_rebuilt_after_loading(tmp_path):
    model = tiny_model(sinusoidal_layout="concat")
    model.save_pretrained(tmp_path)
    loaded = type(model).from_pretrained(tmp_path)
    expected = sinusoidal_table(64, 32, "concat")
    assert torch.equal(loaded.model.encoder.embed_positions.table, expected)
    assert torch.equal(loaded.model.decoder.embed_positions.table, expected)
    from safetensors import safe_open

    with safe_open(tmp_path / "model.safetensors", "pt") as f:
        assert not any("embed_positions" in key for key in f.keys()), "the fixed table must not be stored"


def test_too_long_input_gives_a_clear_error():
    model = tiny_model()  # max_position_embeddings=64
    ids = torch.full((1, 65), 5)
    with pytest.raises(ValueError, match="encoder sequence length 65 exceeds max_position_embeddings=64"):
        model(input_ids=ids, decoder_input_ids=ids[:, :3])
    with pytest.raises(ValueError, match="decoder sequence length 65 exceeds max_position_embeddings=64"):
        model(input_ids=ids[:, :3], decoder_input_ids=ids)
