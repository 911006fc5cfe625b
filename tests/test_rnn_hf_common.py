"""transformers' own common model tests (`ModelTesterMixin`, `GenerationTesterMixin`) on the two recurrent models.

Set up as `tests/test_hf_common.py` does for the Transformer (the suite of the installed transformers release,
assembled by `tests/hf_common/fetch_suite.py`). The mixins are written for attention models; the tests that only
make sense for them are skipped below, each with its reason (`INAPPLICABLE`), everything else runs as for an
in-library model.
"""

from __future__ import annotations

import os
import sys
import unittest
import warnings
from unittest.mock import patch

import pytest

from tests.hf_common.fetch_suite import SuiteUnavailable, ensure_suite

if os.environ.get("HVT_SKIP_HF_COMMON") == "1":
    pytest.skip("HVT_SKIP_HF_COMMON=1: transformers' common model tests not run", allow_module_level=True)

try:
    _SUITE_ROOT = ensure_suite()
except SuiteUnavailable as error:
    raise RuntimeError(
        f"transformers' common test-suite is unavailable: {error}\n"
        "Set HVT_SKIP_HF_COMMON=1 to skip tests/test_rnn_hf_common.py deliberately."
    ) from error
if str(_SUITE_ROOT) not in sys.path:
    sys.path.insert(0, str(_SUITE_ROOT))

from transformers.models.auto import modeling_auto  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
    from transformers_tests.generation.test_utils import GenerationTesterMixin
    from transformers_tests.test_modeling_common import ModelTesterMixin, ids_tensor

import hf_vanilla_transformer as hvt  # noqa: E402
from hf_vanilla_transformer.recurrent_generation import RecurrentStateCache  # noqa: E402

INAPPLICABLE = {
    "test_retain_grad_hidden_states_attentions": "no per-layer hidden states or attention maps to retain",
    "test_hidden_states_output": "RNN layers expose no per-layer hidden states (`output_hidden_states`)",
    "test_generate_continue_from_past_key_values": "a recurrent state cannot be continued from the full sequence: "
    "generate() passes the whole prefix again when it starts from a given cache of a stateful model",
    "test_past_key_values_format": "the cache is a recurrent state (RecurrentStateCache), not keys and values",
}


class RecurrentModelTester:
    """Tiny configs and random inputs, in the shape of transformers' `MarianModelTester`."""

    def __init__(self, parent, config_class, batch_size=13, seq_length=7, vocab_size=99, hidden_size=16):
        self.parent = parent
        self.config_class = config_class
        self.batch_size = batch_size
        self.seq_length = seq_length
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.is_training = True

    def get_config(self):
        return self.config_class(
            vocab_size=self.vocab_size,
            embedding_size=self.hidden_size,
            hidden_size=self.hidden_size,
            encoder_layers=2,
            decoder_layers=2,
            dropout=0.1,
        )

    def prepare_config_and_inputs(self):
        config = self.get_config()
        input_ids = ids_tensor([self.batch_size, self.seq_length], self.vocab_size).clamp(3)
        input_ids[:, -1] = config.eos_token_id
        decoder_input_ids = ids_tensor([self.batch_size, self.seq_length], self.vocab_size).clamp(3)
        decoder_input_ids[:, 0] = config.decoder_start_token_id
        inputs = {
            "input_ids": input_ids,
            "attention_mask": input_ids.ne(config.pad_token_id),
            "decoder_input_ids": decoder_input_ids,
            "decoder_attention_mask": decoder_input_ids.ne(config.pad_token_id),
        }
        return config, inputs

    def prepare_config_and_inputs_for_common(self):
        return self.prepare_config_and_inputs()


class _RecurrentModelTest(ModelTesterMixin, GenerationTesterMixin):
    is_encoder_decoder = True
    # transformers' flag for models without attention layers (its Mamba and RWKV tests set it too): RNNsearch's one
    # alignment map is not per-layer, per-head attention, and the suite then skips its attention-map checks.
    has_attentions = False
    test_can_init_all_missing_weights_before_2023 = True
    config_class: type
    model_class: type
    base_model_class: type

    def setUp(self):
        self.model_tester = RecurrentModelTester(self, self.config_class)
        model_type = self.config_class.model_type
        # As in tests/test_hf_common.py: enter the model in transformers' static name tables for each test.
        self.enterContext(patch.dict(modeling_auto.MODEL_MAPPING_NAMES, {model_type: self.base_model_class.__name__}))
        self.enterContext(
            patch.dict(
                modeling_auto.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES, {model_type: self.model_class.__name__}
            )
        )

    def _check_encoder_hidden_states_for_generate(self, hidden_states, batch_size, config, prompt_length):
        """RNN layers expose no per-layer hidden states: generate() returns none, also when asked."""
        self.assertIsNone(hidden_states)

    def _check_hidden_states_for_generate(self, batch_size, hidden_states, **kwargs):
        """generate() collects the decoder's (absent) hidden states step by step: one None per step."""
        self.assertTrue(hidden_states is None or all(step is None for step in hidden_states), hidden_states)

    def _check_past_key_values_for_generate(self, batch_size, past_key_values, seq_length, config):
        """The cache is the decoder's recurrent state after the whole output: (batch, layers, k, hidden), k = 2 for an
        LSTM's (h, c), 1 for a GRU's h; its length counts the tokens the state has read."""
        self.assertIsInstance(past_key_values, RecurrentStateCache)
        k = 2 if config.cell_type == "lstm" else 1
        self.assertEqual(
            tuple(past_key_values.state().shape), (batch_size, config.decoder_layers, k, config.hidden_size)
        )
        self.assertEqual(past_key_values.get_seq_length(), seq_length)

    def run(self, result=None):
        reason = INAPPLICABLE.get(self._testMethodName)
        if reason:
            test = getattr(self, self._testMethodName)
            setattr(self, self._testMethodName, unittest.skip(reason)(test))
        return super().run(result)


class RNNEncoderDecoderModelTest(_RecurrentModelTest, unittest.TestCase):
    config_class = hvt.RNNEncoderDecoderConfig
    model_class = hvt.RNNEncoderDecoderForConditionalGeneration
    base_model_class = hvt.RNNEncoderDecoderModel
    all_model_classes = (hvt.RNNEncoderDecoderModel, hvt.RNNEncoderDecoderForConditionalGeneration)


class RNNSearchModelTest(_RecurrentModelTest, unittest.TestCase):
    config_class = hvt.RNNSearchConfig
    model_class = hvt.RNNSearchForConditionalGeneration
    base_model_class = hvt.RNNSearchModel
    all_model_classes = (hvt.RNNSearchModel, hvt.RNNSearchForConditionalGeneration)
