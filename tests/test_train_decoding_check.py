"""train.decoding_check: a run whose cached decoding is broken stops at the first validation."""

import pytest
import transformers

import hf_vanilla_transformer.modeling_vanilla_transformer as modeling
from tests.helpers import tiny_model
from train.decoding_check import BrokenDecodingError, DecodingCheckCallback, check_cached_decoding

SOURCES = [[5, 6, 7, 8, 2], [9, 10, 2], [11, 12, 13, 2]]


def test_a_working_cache_passes():
    check_cached_decoding(tiny_model(), SOURCES, pad_token_id=0)


def test_a_model_that_ignores_its_cache_is_caught(monkeypatch):
    """What transformers 5.24 did to the old code: the cache never reached the decoder."""
    monkeypatch.setattr(modeling, "resolve_cache", lambda cache, past_key_values, where: None)
    with pytest.raises(BrokenDecodingError, match=f"under transformers {transformers.__version__}"):
        check_cached_decoding(tiny_model(), SOURCES, pad_token_id=0)
    callback = DecodingCheckCallback(SOURCES, pad_token_id=0)
    with pytest.raises(BrokenDecodingError):
        callback.on_evaluate(None, None, None, model=tiny_model())
