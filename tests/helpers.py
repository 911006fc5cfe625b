"""Small shared helpers for the test-suite (not fixtures: conftest.py is kept for session setup)."""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import pytest
import torch

import hf_vanilla_transformer as hvt
from hf_vanilla_transformer.configuration_vanilla_transformer import PRESETS
from train.data import local_data_dir

REPO_ROOT = Path(__file__).resolve().parents[1]
MULTI30K = local_data_dir("multi30k") or REPO_ROOT.parent / "shared" / "data" / "multi30k"
"""The local Multi30k copy the tests read: `$HVT_DATA_DIR/multi30k`, else `../shared/data/multi30k` beside
the checkout (`train.data.local_data_dir`, the lookup training uses). Read its files through `multi30k_file`."""
SHARED_DATA = MULTI30K.parent
MISSING_DATA = (
    f"needs the Multi30k text in {MULTI30K}: check out beside shared/data/, or set $HVT_DATA_DIR to the folder "
    "holding multi30k/ (and tatoeba-cmn-eng/)"
)


def multi30k_file(name: str) -> Path:
    """`MULTI30K / name`, or a skip of the calling test naming the missing folder and how to point at it."""
    path = MULTI30K / name
    if not path.is_file():
        pytest.skip(MISSING_DATA)
    return path


TINY_SIZES = {key: value for key, value in PRESETS["tiny"].items() if key != "dropout"}
"""The `tiny` preset's sizes (Marian/BART field names, so MarianConfig takes them too): a model that runs
in milliseconds."""

ONE_LAYER_SIZES = dict(
    d_model=32,
    encoder_layers=1,
    decoder_layers=1,
    encoder_attention_heads=2,
    decoder_attention_heads=2,
    encoder_ffn_dim=64,
    decoder_ffn_dim=64,
)
"""An even smaller model (1+1 layers) for end-to-end runs: training, pushing, pulling."""


def tiny_config(**overrides) -> hvt.VanillaTransformerConfig:
    """A model small enough to build and run in milliseconds."""
    return hvt.VanillaTransformerConfig(**{**TINY_SIZES, "dropout": 0.0, **overrides})


def tiny_model(seed: int = 0, **overrides) -> hvt.VanillaTransformerForConditionalGeneration:
    torch.manual_seed(seed)
    return hvt.VanillaTransformerForConditionalGeneration(tiny_config(**overrides)).eval()


def random_batch(vocab_size: int = 64, batch: int = 3, src_len: int = 7, tgt_len: int = 5, seed: int = 0):
    """Source ids with padding in all but the first row, and shifted-target decoder ids."""
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(4, vocab_size, (batch, src_len), generator=g)
    attention_mask = torch.ones_like(input_ids)
    for row in range(1, batch):
        attention_mask[row, src_len - row :] = 0
    input_ids = input_ids.masked_fill(attention_mask == 0, 0)
    input_ids[:, 0] = input_ids[:, 0].clamp(min=4)
    decoder_input_ids = torch.randint(4, vocab_size, (batch, tgt_len), generator=g)
    decoder_input_ids[:, 0] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "decoder_input_ids": decoder_input_ids}


@functools.cache
def multi30k_tokenizer(vocab_size: int = 1000):
    """A shared BPE tokenizer trained on Multi30k De+En (a few seconds; cached per session)."""
    return hvt.train_tokenizer([multi30k_file("train.de"), multi30k_file("train.en")], vocab_size=vocab_size)


@contextlib.contextmanager
def transformers_loop(model):
    """`generate()` in transformers' loops, not this package's (`greedy_search.py`, `beam_search.py`)."""
    model.use_own_decoding_loops = False
    try:
        yield
    finally:
        model.use_own_decoding_loops = True


def random_sources(seed: int, batch: int, vocab_size: int, max_len: int = 9) -> dict:
    """Sentences of 1..max_len tokens, right-padded."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, max_len + 1, (batch,), generator=g)
    input_ids = torch.randint(4, vocab_size, (batch, int(lengths.max())), generator=g)
    mask = (torch.arange(input_ids.shape[1])[None] < lengths[:, None]).long()
    return {"input_ids": input_ids.masked_fill(mask == 0, 0), "attention_mask": mask}


def both_loops(model, batch: dict, **options) -> tuple[torch.Tensor, torch.Tensor]:
    """`generate(**batch, **options)` in this package's loops, then in transformers'."""
    with torch.no_grad():
        ours = model.generate(**batch, **options)
        with transformers_loop(model):
            theirs = model.generate(**batch, **options)
    return ours, theirs
