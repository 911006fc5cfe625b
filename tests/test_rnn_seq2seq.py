"""The recurrent encoder-decoders (Sutskever et al. 2014; Bahdanau et al. 2015): configuration, save/load, cached =
uncached decoding, padding, the reversed source, the attention against its formula, initialisation, remote code."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
from torch import nn
from transformers import AutoModel, AutoModelForSeq2SeqLM, pipeline

import hf_vanilla_transformer as hvt
from hf_vanilla_transformer import modeling_rnn_seq2seq, modeling_vanilla_transformer, seq2seq_loss
from hf_vanilla_transformer.compat import output_cache
from hf_vanilla_transformer.conditional_generation import ConditionalGenerationMixin
from hf_vanilla_transformer.recurrent_generation import RecurrentStateCache
from tests.helpers import multi30k_tokenizer, random_batch
from tests.hub_helpers import result_of, run_isolated

MODELS = {
    "rnn_encoder_decoder": (hvt.RNNEncoderDecoderConfig, hvt.RNNEncoderDecoderForConditionalGeneration),
    "rnn_search": (hvt.RNNSearchConfig, hvt.RNNSearchForConditionalGeneration),
}
MODEL_TYPES = sorted(MODELS)
CELLS = ("gru", "lstm")


def tiny_rnn(model_type: str, seed: int = 0, randomise: bool = True, **overrides):
    """A `tiny` preset model in eval mode. `randomise` draws every weight from U(-0.5, 0.5): the papers' inits
    (U(+-0.08); N(0, 0.001^2) alignment weights with v_a = 0, i.e. uniform attention) make nearly constant outputs."""
    config_class, model_class = MODELS[model_type]
    torch.manual_seed(seed)
    model = model_class(config_class.from_preset("tiny", **overrides)).eval()
    if randomise:
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.uniform_(-0.5, 0.5)
    return model


def two_layer(model_type: str, cell: str, **overrides):
    return tiny_rnn(model_type, cell_type=cell, encoder_layers=2, decoder_layers=2, **overrides)


def sources():
    batch = random_batch(batch=3, src_len=7)
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


# ---------------------------------------------------------------------------- configuration
def test_defaults_follow_the_papers():
    sutskever, bahdanau = hvt.RNNEncoderDecoderConfig(), hvt.RNNSearchConfig()
    assert (sutskever.cell_type, sutskever.reverse_source) == ("lstm", True)  # Sutskever §2, §3.3
    assert bahdanau.cell_type == "gru"  # Bahdanau's gated unit is Cho et al.'s
    for config in (sutskever, bahdanau):
        assert config.share_encoder_decoder_embeddings and config.tie_word_embeddings
        assert (config.pad_token_id, config.bos_token_id, config.eos_token_id, config.decoder_start_token_id) == (
            0,
            1,
            2,
            1,
        )
    assert (
        hvt.RNNEncoderDecoderConfig.from_preset("paper").to_dict().items()
        >= {
            "encoder_layers": 4,
            "hidden_size": 1000,
            "embedding_size": 1000,
        }.items()
    )
    assert (
        hvt.RNNSearchConfig.from_preset("paper").to_dict().items()
        >= {
            "hidden_size": 1000,
            "embedding_size": 620,
            "attention_size": 1000,
        }.items()
    )


@pytest.mark.parametrize(
    "config_class, kwargs, message",
    [
        (hvt.RNNEncoderDecoderConfig, dict(encoder_layers=2, decoder_layers=1), "encoder_layers (2) must equal"),
        (hvt.RNNEncoderDecoderConfig, dict(cell_type="rnn"), "got 'rnn'"),
        (hvt.RNNSearchConfig, dict(hidden_size=0), "hidden_size must be a positive integer, got 0"),
        (hvt.RNNSearchConfig, dict(dropout=1.0), "dropout must be in [0, 1), got 1.0"),
        (hvt.RNNSearchConfig, dict(attention_size=-3), "attention_size must be a positive integer, got -3"),
        (hvt.RNNSearchConfig, dict(pad_token_id=None), "pad_token_id and decoder_start_token_id must be set"),
    ],
)
def test_impossible_configs_raise_value_errors_naming_the_value(config_class, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        config_class(**kwargs)


def test_unknown_preset_is_refused():
    with pytest.raises(ValueError, match=r"unknown preset 'base' for RNNSearchConfig; choose one of \['paper'"):
        hvt.RNNSearchConfig.from_preset("base")


def test_auto_classes_know_both_models():
    for model_type, (config_class, model_class) in MODELS.items():
        config = config_class.from_preset("tiny")
        assert type(AutoModelForSeq2SeqLM.from_config(config)) is model_class
        assert type(AutoModel.from_config(config)).__name__ == model_class.__name__.replace(
            "ForConditionalGeneration", "Model"
        )
        assert config.model_type == model_type


# ---------------------------------------------------------------------------- save / load
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_save_load_gives_the_same_logits_and_stores_tied_weights_once(model_type, cell, tmp_path):
    model = two_layer(model_type, cell)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path).eval()
    batch = random_batch()
    with torch.no_grad():
        # Equal up to rounding: torch's RNN kernels may block differently on differently laid out weights.
        torch.testing.assert_close(loaded(**batch).logits, model(**batch).logits)
    assert loaded.lm_head.weight is loaded.model.shared.weight is loaded.model.decoder.embed_tokens.weight
    from safetensors import safe_open

    with safe_open(str(tmp_path / "model.safetensors"), framework="pt") as handle:
        embedding_copies = [key for key in handle.keys() if any(n in key for n in ("embed", "shared", "lm_head"))]
    assert embedding_copies == ["model.shared.weight"]


def test_untied_and_unshared_embeddings_are_separate_weights():
    model = tiny_rnn("rnn_search", share_encoder_decoder_embeddings=False, tie_word_embeddings=False)
    weights = (model.lm_head.weight, model.model.encoder.embed_tokens.weight, model.model.decoder.embed_tokens.weight)
    assert len({weight.data_ptr() for weight in weights}) == 3


# ---------------------------------------------------------------------------- decoding
@pytest.mark.parametrize("num_beams", [1, 4])
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_cached_equals_uncached_decoding(model_type, cell, num_beams):
    model = two_layer(model_type, cell)
    with torch.no_grad():
        cached = model.generate(**sources(), num_beams=num_beams, max_new_tokens=8, use_cache=True)
        uncached = model.generate(**sources(), num_beams=num_beams, max_new_tokens=8, use_cache=False)
    assert torch.equal(cached, uncached)
    assert cached.shape[1] > 3  # not a trivial decode that stopped at once


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_incremental_decoder_equals_full_pass(model_type):
    """Feeding the target one token at a time through the cached state gives the logits of one pass over it."""
    model = two_layer(model_type, "lstm")
    batch = random_batch(tgt_len=6)
    with torch.no_grad():
        full = model(**batch, use_cache=False).logits
        cache, steps = RecurrentStateCache(model.config.decoder_layers), []
        for i in range(batch["decoder_input_ids"].shape[1]):
            out = model(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                decoder_input_ids=batch["decoder_input_ids"][:, i : i + 1],
                cache=cache,
                use_cache=True,
            )
            assert output_cache(out) is cache and cache.get_seq_length() == i + 1
            steps.append(out.logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_greedy_equals_decoding_by_hand(model_type):
    """`num_beams=1` is greedy search: the argmax of a full forward pass at each step, until `</s>`."""
    model = two_layer(model_type, "gru")
    batch = sources()
    with torch.no_grad():
        greedy = model.generate(**batch, num_beams=1, max_new_tokens=8)
        ids = torch.full((3, 1), model.config.decoder_start_token_id)
        done = torch.zeros(3, dtype=torch.bool)
        for _ in range(8):
            next_ids = model(**batch, decoder_input_ids=ids, use_cache=False).logits[:, -1].argmax(-1)
            next_ids = next_ids.masked_fill(done, model.config.pad_token_id)
            ids = torch.cat([ids, next_ids[:, None]], dim=1)
            done |= next_ids == model.config.eos_token_id
            if done.all():
                break
    assert torch.equal(greedy, ids)


def test_beam_search_reorders_the_recurrent_state():
    """Beam search keeps the state of the surviving hypotheses: after `reorder_cache(beam_idx)` row i holds the state
    (and the attention keys) of row beam_idx[i]."""
    cache = RecurrentStateCache(num_layers=2)
    state = torch.arange(4 * 2 * 1 * 3, dtype=torch.float).view(4, 2, 1, 3)
    cache.update_state(state, num_new_tokens=1)
    cache.attention_keys = torch.arange(4.0)[:, None, None].expand(4, 5, 2)
    beam_idx = torch.tensor([2, 2, 0, 1])
    cache.reorder_cache(beam_idx)
    assert torch.equal(cache.state(), state[beam_idx])
    assert torch.equal(cache.attention_keys[:, 0, 0], beam_idx.float())
    assert all(cache.is_linear) and cache.get_seq_length() == 1


def test_a_key_value_cache_is_refused():
    from transformers.cache_utils import DynamicCache

    model = tiny_rnn("rnn_search")
    with pytest.raises(TypeError, match="must be a RecurrentStateCache .* got DynamicCache"):
        model(**random_batch(), cache=DynamicCache(), use_cache=True)


@pytest.mark.parametrize(
    "assistance",
    [{"prompt_lookup_num_tokens": 2}, {"assistant_early_exit": 1}, {"assistant_model": "draft"}],
    ids=["prompt_lookup", "early_exit", "draft_model"],
)
def test_assisted_generation_is_refused_on_every_release(assistance):
    """A recurrent state cannot be cropped back to the accepted prefix. transformers <= 5.24 refused assisted
    generation for `_is_stateful` models; 5.25 dropped the flag, so the model refuses it itself."""
    model = tiny_rnn("rnn_search")
    if "assistant_model" in assistance:
        assistance = {"assistant_model": tiny_rnn("rnn_search", seed=1)}
    name = next(iter(assistance))
    with pytest.raises(ValueError, match=rf"does not support assisted generation \(given: {name}\)"):
        model.generate(**sources(), max_new_tokens=3, **assistance)


def test_a_source_without_tokens_is_refused():
    model = tiny_rnn("rnn_encoder_decoder")
    batch = random_batch()
    batch["attention_mask"][1] = 0
    with pytest.raises(ValueError, match=r"rows \[1\] of attention_mask hold no token"):
        model(**batch)


# ---------------------------------------------------------------------------- the encoder
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_padding_does_not_change_a_sentence(model_type, cell):
    """A padded row gives what its sentence gives alone: padding is skipped, wherever it is."""
    model = two_layer(model_type, cell)
    batch = random_batch(batch=3, src_len=7)
    batch["attention_mask"][2] = torch.tensor([1, 0, 1, 1, 0, 1, 0])  # padding inside the row too
    with torch.no_grad():
        padded = model(**batch).logits
        for row in range(3):
            tokens = batch["input_ids"][row][batch["attention_mask"][row].bool()][None]
            alone = model(input_ids=tokens, decoder_input_ids=batch["decoder_input_ids"][row : row + 1]).logits
            torch.testing.assert_close(padded[row : row + 1], alone)


def test_reversed_source_is_reading_the_sentence_backwards():
    """Sutskever et al. §3.3: `reverse_source=True` equals the same weights given each sentence reversed."""
    reverse = tiny_rnn("rnn_encoder_decoder", reverse_source=True)
    forward = tiny_rnn("rnn_encoder_decoder", reverse_source=False)
    forward.load_state_dict(reverse.state_dict())
    batch = random_batch()
    flipped = dict(batch, input_ids=batch["input_ids"].clone())
    for row, length in enumerate(batch["attention_mask"].sum(1).tolist()):
        flipped["input_ids"][row, :length] = batch["input_ids"][row, :length].flip(0)
    with torch.no_grad():
        torch.testing.assert_close(reverse(**batch).logits, forward(**flipped).logits)
        assert not torch.allclose(reverse(**batch).logits, forward(**batch).logits)


def test_encoder_reads_with_torchs_own_rnn():
    """The encoder's outputs and final states are those of its `nn.LSTM` run on the unpadded sentence."""
    model = tiny_rnn("rnn_search", cell_type="lstm", encoder_layers=2, decoder_layers=1)
    batch = random_batch()
    with torch.no_grad():
        encoded = model.get_encoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        row, length = 2, int(batch["attention_mask"][2].sum())
        outputs, (h, c) = model.model.encoder.rnn(model.model.shared(batch["input_ids"][row : row + 1, :length]))
    torch.testing.assert_close(encoded.last_hidden_state[row, :length], outputs[0])
    assert not encoded.last_hidden_state[row, length:].any()
    torch.testing.assert_close(encoded.final_state[row, :, 0], h[:, 0])  # (layers * 2 directions, H)
    torch.testing.assert_close(encoded.final_state[row, :, 1], c[:, 0])


def test_without_attention_the_source_reaches_the_decoder_only_through_the_final_state():
    """Sutskever et al.: the per-token encoder outputs are not used by the decoder; its final state is."""
    model = two_layer("rnn_encoder_decoder", "lstm")
    batch = random_batch()
    with torch.no_grad():
        encoded = model.get_encoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        decoder_inputs = dict(attention_mask=batch["attention_mask"], decoder_input_ids=batch["decoder_input_ids"])
        logits = model(encoder_outputs=encoded, **decoder_inputs).logits
        scrambled = type(encoded)(
            last_hidden_state=torch.randn_like(encoded.last_hidden_state), final_state=encoded.final_state
        )
        assert torch.equal(model(encoder_outputs=scrambled, **decoder_inputs).logits, logits)
        other_state = type(encoded)(
            last_hidden_state=encoded.last_hidden_state, final_state=encoded.final_state.flip(0)
        )
        assert not torch.allclose(model(encoder_outputs=other_state, **decoder_inputs).logits, logits)


# ---------------------------------------------------------------------------- attention (Bahdanau et al.)
@pytest.mark.parametrize("cell", CELLS)
def test_attention_weights_follow_the_alignment_model(cell):
    """alpha_ij = softmax_j(v_a^T tanh(W_a s_{i-1} + U_a h_j)) over the tokens, 0 at padding, summing to 1
    (Bahdanau et al. §3.1 eqs. 5-6), recomputed by hand from the weights and the states."""
    model = tiny_rnn("rnn_search", cell_type=cell)
    batch = random_batch(batch=3, src_len=7, tgt_len=4)
    with torch.no_grad():
        out = model(**batch, output_attentions=True)
        weights = out.cross_attentions[0][:, 0]  # (B, T, S)
        mask = batch["attention_mask"].bool()
        torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4))
        assert (weights.masked_select(~mask[:, None, :].expand_as(weights)) == 0).all()

        attention = model.model.decoder.attention
        annotations = out.encoder_last_hidden_state  # h_j, (B, S, 2n)
        # s_{i-1} for i = 1..T: s_0, then the decoder's states after each prefix (from the cache).
        queries = []
        for i in range(4):
            cache = RecurrentStateCache(1)
            if i == 0:
                encoded = model.get_encoder()(**{k: batch[k] for k in ("input_ids", "attention_mask")})
                state = model.model.decoder.initial_state(encoded)
            else:
                model(**{**batch, "decoder_input_ids": batch["decoder_input_ids"][:, :i]}, cache=cache, use_cache=True)
                state = cache.state()
            queries.append(state[:, -1, 0])  # top layer's h, (B, n)
        for i, query in enumerate(queries):
            energies = torch.tanh((query @ attention.W_a.T)[:, None] + annotations @ attention.U_a.T) @ attention.v_a
            energies = energies.masked_fill(~mask, float("-inf"))
            torch.testing.assert_close(weights[:, i], torch.softmax(energies, dim=-1))


def test_maxout_readout_takes_the_larger_of_each_pair():
    """t_i = [max(t~_{i,2j-1}, t~_{i,2j})]_j (Bahdanau et al. Appendix A.2.2), checked by replacing the readout with
    a map whose output is known."""
    model = tiny_rnn("rnn_search", embedding_size=2, hidden_size=4, attention_size=3)
    readout = model.model.decoder.readout
    with torch.no_grad():
        readout.weight.zero_()
        readout.bias.copy_(torch.tensor([1.0, -2.0, -3.0, 4.0]))  # pairs (1, -2) and (-3, 4)
        features = model.model(**random_batch(vocab_size=64)).last_hidden_state
    assert torch.equal(features, torch.tensor([1.0, 4.0]).expand_as(features))


# ---------------------------------------------------------------------------- initialisation
def test_sutskever_initialisation_is_uniform_within_0_08():
    model = tiny_rnn("rnn_encoder_decoder", randomise=False, hidden_size=200, embedding_size=200)
    for name, parameter in model.named_parameters():
        values = parameter.detach()
        if name == "model.shared.weight":
            assert not values[0].any()  # <pad>
            values = values[1:]
        assert values.abs().max() <= 0.08 and values.abs().max() > 0.075, name  # U(-0.08, 0.08), §3.4


def test_bahdanau_initialisation_follows_appendix_b1():
    model = tiny_rnn("rnn_search", randomise=False, cell_type="gru", hidden_size=50)
    attention = model.model.decoder.attention
    assert not attention.v_a.any()  # v_a = 0
    for weight in (attention.W_a, attention.U_a):
        assert 0.0007 < weight.std() < 0.0013  # N(0, 0.001^2)
    for rnn in (model.model.encoder.rnn, model.model.decoder.rnn):
        for name, parameter in rnn.named_parameters():
            if name.startswith("weight_hh"):
                for block in parameter.detach().split(50):  # reset, update and new gates, each orthogonal
                    torch.testing.assert_close(block @ block.T, torch.eye(50), atol=1e-5, rtol=0)
            elif name.startswith("bias"):
                assert not parameter.any()
            else:
                assert 0.008 < parameter.std() < 0.012  # N(0, 0.01^2)


def test_from_pretrained_keeps_the_loaded_weights(tmp_path):
    """`_init_weights` (orthogonal blocks are views of one parameter) must not overwrite loaded weights."""
    model = tiny_rnn("rnn_search", randomise=True)
    model.save_pretrained(tmp_path)
    loaded = hvt.RNNSearchForConditionalGeneration.from_pretrained(tmp_path)
    for (name, parameter), loaded_parameter in zip(model.named_parameters(), loaded.parameters(), strict=True):
        assert torch.equal(parameter, loaded_parameter), name


# ---------------------------------------------------------------------------- loss
def test_the_transformer_and_the_recurrent_models_share_one_loss_and_output_layer():
    assert modeling_vanilla_transformer.label_smoothed_nll_loss is seq2seq_loss.label_smoothed_nll_loss
    assert modeling_rnn_seq2seq.label_smoothed_nll_loss is seq2seq_loss.label_smoothed_nll_loss
    for model_class in (
        hvt.VanillaTransformerForConditionalGeneration,
        hvt.RNNEncoderDecoderForConditionalGeneration,
        hvt.RNNSearchForConditionalGeneration,
    ):
        assert issubclass(model_class, ConditionalGenerationMixin)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_forward_loss_is_label_smoothed_cross_entropy(model_type):
    model = tiny_rnn(model_type)
    batch = random_batch()
    labels = batch.pop("decoder_input_ids")[:, 1:].clone()
    labels[0, -1] = -100
    with torch.no_grad():
        out = model(**batch, labels=labels, label_smoothing=0.1)
        expected = nn.functional.cross_entropy(
            out.logits.reshape(-1, 64), labels.reshape(-1), ignore_index=-100, label_smoothing=0.1
        )
    torch.testing.assert_close(out.loss, expected)


# ---------------------------------------------------------------------------- remote code
FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, pipeline
    path, sentences = sys.argv[1], json.loads(sys.argv[2])
    model = AutoModelForSeq2SeqLM.from_pretrained(path, trust_remote_code=True).eval()
    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=True)
    batch = tok(sentences, return_tensors="pt", padding=True)
    with torch.no_grad():
        ids = model.generate(**batch, num_beams=4, max_new_tokens=8)
        logits = model(**batch, decoder_input_ids=ids[:, :4]).logits
    translate = pipeline("translation", model=path, trust_remote_code=True)
    print("RESULT " + json.dumps({
        "class": type(model).__name__,
        "module": type(model).__module__,
        "generated": tok.batch_decode(ids, skip_special_tokens=True),
        "logits_sum": float(logits.double().sum()),
        "pipeline": translate(sentences, num_beams=4, max_new_tokens=8, batch_size=2),
    }))
    """
)
SENTENCES = ["Ein Hund läuft.", "Zwei Männer stehen auf der Straße."]


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_fresh_process_without_the_package_translates_the_same(model_type, tmp_path):
    tok = multi30k_tokenizer()
    config_class, model_class = MODELS[model_type]
    torch.manual_seed(0)
    model = model_class(config_class.from_preset("tiny", vocab_size=len(tok), cell_type="lstm")).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.uniform_(-0.3, 0.3)
    path = tmp_path / "saved"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    config = json.loads((path / "config.json").read_text())
    module = "modeling_rnn_seq2seq"
    assert config["auto_map"] == {
        "AutoConfig": f"configuration_rnn_seq2seq.{config_class.__name__}",
        "AutoModel": f"{module}.{model_class.__name__.replace('ForConditionalGeneration', 'Model')}",
        "AutoModelForSeq2SeqLM": f"{module}.{model_class.__name__}",
    }
    assert "modeling_vanilla_transformer.py" not in {p.name for p in path.iterdir()}  # ships only its own code

    remote = result_of(run_isolated(FRESH_PROCESS, tmp_path / "fresh", str(path), json.dumps(SENTENCES), timeout=300))
    batch = tok(SENTENCES, return_tensors="pt", padding=True)
    with torch.no_grad():
        ids = model.generate(**batch, num_beams=4, max_new_tokens=8)
        logits = model(**batch, decoder_input_ids=ids[:, :4]).logits
    assert remote["class"] == model_class.__name__ and remote["module"].startswith("transformers_modules.")
    assert remote["generated"] == tok.batch_decode(ids, skip_special_tokens=True)
    assert remote["logits_sum"] == pytest.approx(float(logits.double().sum()), rel=1e-6)
    assert [r["translation_text"] for r in remote["pipeline"]] == remote["generated"]


def test_in_process_translation_pipeline(tmp_path):
    tok = multi30k_tokenizer()
    model = tiny_rnn("rnn_search", vocab_size=len(tok))
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    translate = pipeline("translation", model=str(tmp_path), trust_remote_code=True)
    out = translate(SENTENCES, num_beams=1, max_new_tokens=6)
    ids = model.generate(**tok(SENTENCES, return_tensors="pt", padding=True), num_beams=1, max_new_tokens=6)
    assert [o["translation_text"] for o in out] == tok.batch_decode(ids, skip_special_tokens=True)
