"""train.precision: bf16 autocast only where the CPU multiplies bf16 in hardware."""

import logging

import pytest

from train.precision import choose_precision, native_bf16


@pytest.mark.parametrize(
    "flags, expected",
    [({"avx2", "avx512f", "avx512_bf16"}, "bf16"), ({"amx_bf16", "amx_tile"}, "bf16"), ({"avx2", "fma"}, "fp32")],
)
def test_auto_picks_bf16_only_with_native_support(flags, expected, caplog):
    with caplog.at_level(logging.INFO):
        assert choose_precision("auto", flags) == expected
    logged = {"bf16": "precision: bf16 autocast", "fp32": "precision: fp32, no autocast"}[expected]
    assert logged in caplog.text


def test_explicit_settings_are_kept_and_emulated_bf16_warns(caplog):
    assert choose_precision("fp32", {"avx512_bf16"}) == "fp32"
    with caplog.at_level(logging.WARNING):
        assert choose_precision("bf16", {"avx2"}) == "bf16"
    assert "emulates bf16" in caplog.text
    assert not native_bf16({"avx2"})
    with pytest.raises(ValueError, match="precision must be one of"):
        choose_precision("fp16")
