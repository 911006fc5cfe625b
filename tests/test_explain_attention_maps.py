"""`explain.attention_maps` on a tiny random model: the recorded weights are the model's attention
(checked against a hand computation of softmax(Q K^T / sqrt(d_k)), §3.2.1), whatever kernel the model
was loaded with, and the model is left as it was; the pictures and the command line."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from tokenizers import pre_tokenizers

import hf_vanilla_transformer as hvt
from explain import attention_maps
from explain.attention_maps import KINDS, draw_attention_layer, eager_attention, record_attention
from explain.token_labels import WORD_START, byte_to_char, readable_piece, readable_tokens
from tests._tiny_tokenizer import tiny_tokenizer
from tests.helpers import tiny_model
from tests.train_helpers import one_thread  # noqa: F401  (autouse fixture: one torch thread)

SOURCE = "Zwei Hunde spielen im Schnee."
REFERENCE = "Two dogs are playing in the snow."
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tokenizer) -> Path:
    folder = tmp_path_factory.mktemp("model")
    tiny_model(vocab_size=len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def load(model_dir: Path, **kwargs) -> hvt.VanillaTransformerForConditionalGeneration:
    return hvt.VanillaTransformerForConditionalGeneration.from_pretrained(model_dir, **kwargs).eval()


@pytest.fixture(scope="module")
def sdpa_model(model_dir):
    model = load(model_dir)  # transformers' default kernel
    assert model.config._attn_implementation == "sdpa"
    return model


@pytest.fixture(scope="module")
def maps(sdpa_model, tokenizer):
    return record_attention(sdpa_model, tokenizer, SOURCE, REFERENCE)


def test_weights_have_one_matrix_per_layer_and_head_and_labels_for_every_position(maps, sdpa_model, tokenizer):
    config = sdpa_model.config
    source_len = len(tokenizer(SOURCE)["input_ids"])
    target_len = len(tokenizer(text_target=REFERENCE)["input_ids"])
    heads = config.encoder_attention_heads
    assert maps.encoder_self.shape == (config.encoder_layers, heads, source_len, source_len)
    assert maps.decoder_self.shape == (config.decoder_layers, heads, target_len, target_len)
    assert maps.cross.shape == (config.decoder_layers, heads, target_len, source_len)
    assert len(maps.source_tokens) == source_len and maps.source_tokens[-1] == "</s>"
    # Decoder inputs are the target shifted right (§3.1): position i reads y_i and predicts y_{i+1}.
    assert maps.target_tokens[0] == "<s>" and maps.predicted_tokens[-1] == "</s>"
    assert maps.target_tokens[1:] == maps.predicted_tokens[:-1]
    assert maps.teacher_forced_on == "reference" and maps.target_text == REFERENCE
    for kind in KINDS:
        rows, cols = maps.labels(kind)
        assert (len(rows), len(cols)) == maps.weights(kind).shape[-2:]


@pytest.mark.parametrize("kind", KINDS)
def test_every_row_is_a_probability_distribution(maps, kind):
    weights = maps.weights(kind)
    assert (weights >= 0).all()
    torch.testing.assert_close(weights.sum(dim=-1), torch.ones(weights.shape[:-1]), rtol=0, atol=1e-5)


def test_masked_decoder_self_attention_is_exactly_zero_above_the_diagonal(maps):
    above = torch.triu(torch.ones(maps.decoder_self.shape[-2:], dtype=torch.bool), diagonal=1)
    assert (maps.decoder_self[..., above] == 0).all()
    assert (maps.decoder_self[..., ~above] > 0).all()  # every allowed position gets some weight


def test_sdpa_model_gives_the_eager_models_weights_and_stays_on_sdpa(model_dir, sdpa_model, tokenizer, maps):
    eager = record_attention(load(model_dir, attn_implementation="eager"), tokenizer, SOURCE, REFERENCE)
    for kind in KINDS:
        torch.testing.assert_close(maps.weights(kind), eager.weights(kind), rtol=0, atol=1e-6)
    assert sdpa_model.config._attn_implementation == "sdpa"
    assert sdpa_model.model.decoder.config._attn_implementation == "sdpa"


def test_the_model_is_left_as_the_caller_had_it(model_dir, tokenizer):
    model = load(model_dir, dropout=0.3)
    batch = tokenizer([SOURCE], text_target=[REFERENCE], return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    model.train()
    recorded = record_attention(model, tokenizer, SOURCE, REFERENCE)
    assert model.training and model.config._attn_implementation == "sdpa"
    # Recorded without dropout: the same weights as from the model in eval mode.
    model.eval()
    again = record_attention(model, tokenizer, SOURCE, REFERENCE)
    torch.testing.assert_close(recorded.cross, again.cross, rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, logits, rtol=0, atol=0)


def test_a_model_that_cannot_switch_to_eager_is_an_error(sdpa_model, monkeypatch):
    monkeypatch.setattr(type(sdpa_model), "set_attn_implementation", lambda self, implementation: None)
    with pytest.raises(RuntimeError, match="could not switch attention from 'sdpa' to 'eager'"):
        with eager_attention(sdpa_model):
            pass


@pytest.mark.parametrize("attention_bias", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_weights_equal_softmax_of_the_layers_own_queries_and_keys(tokenizer, kind, attention_bias):
    """softmax(Q K^T / sqrt(d_k)) (§3.2.1, eq. 1) for one head, by hand from the inputs the attention module
    received and its own q_proj / k_proj (the rows of head h in (h * d_k, d_model)), masked for the decoder."""
    layer, head = 1, 2
    sdpa_model = tiny_model(vocab_size=len(tokenizer), attention_bias=attention_bias)
    stack = sdpa_model.model.encoder if kind == "encoder-self" else sdpa_model.model.decoder
    module = {"encoder-self": "self_attn", "decoder-self": "self_attn", "cross": "encoder_attn"}[kind]
    attention = getattr(stack.layers[layer], module)
    received = {}

    def keep_inputs(module, args, kwargs):
        received["queries"] = args[0] if args else kwargs["hidden_states"]
        received["keys"] = kwargs.get("key_value_states")
        if received["keys"] is None:
            received["keys"] = received["queries"]

    hook = attention.register_forward_pre_hook(keep_inputs, with_kwargs=True)
    try:
        maps = record_attention(sdpa_model, tokenizer, SOURCE, REFERENCE)
    finally:
        hook.remove()

    d_k = attention.head_dim
    rows = slice(head * d_k, (head + 1) * d_k)

    def project(x: torch.Tensor, linear: torch.nn.Linear) -> torch.Tensor:  # (T, d_model) -> (T, d_k), head `head`
        bias = None if linear.bias is None else linear.bias[rows].double()
        return torch.nn.functional.linear(x.double(), linear.weight[rows].double(), bias)

    with torch.no_grad():
        queries = project(received["queries"][0], attention.q_proj)
        keys = project(received["keys"][0], attention.k_proj)
    scores = queries @ keys.T / math.sqrt(d_k)
    if kind == "decoder-self":
        future = torch.triu(torch.ones_like(scores, dtype=torch.bool), diagonal=1)
        scores = scores.masked_fill(future, float("-inf"))
    expected = torch.softmax(scores, dim=-1).float()
    torch.testing.assert_close(maps.weights(kind)[layer, head], expected, rtol=0, atol=1e-5)


def test_without_a_reference_the_target_is_the_models_own_translation(sdpa_model, tokenizer):
    maps = record_attention(sdpa_model, tokenizer, SOURCE, num_beams=1)
    with torch.no_grad():
        greedy = sdpa_model.generate(**tokenizer(SOURCE, return_tensors="pt"), num_beams=1)[0]
    assert maps.teacher_forced_on == "translation"
    assert maps.target_text == tokenizer.decode(greedy, skip_special_tokens=True)
    assert maps.target_tokens == readable_tokens(tokenizer, greedy[: len(maps.target_tokens)])
    assert sdpa_model.config._attn_implementation == "sdpa"


@pytest.mark.parametrize("kind", KINDS)
def test_only_the_causal_masks_cells_are_blank_in_the_picture(maps, kind):
    import matplotlib.pyplot as plt

    fig = draw_attention_layer(maps, kind, layer=0)
    try:
        images = [ax.images[0] for ax in fig.axes if ax.images]
        heads = maps.weights(kind).shape[1]
        assert len(images) == heads + 1  # every head and the mean
        queries, keys = maps.weights(kind).shape[-2:]
        expected = torch.zeros(queries, keys, dtype=torch.bool)
        if kind == "decoder-self":
            expected = torch.triu(torch.ones(queries, keys, dtype=torch.bool), diagonal=1)
        for image in images:
            assert (torch.from_numpy(image.get_array().mask.copy()) == expected).all()
        torch.testing.assert_close(
            torch.from_numpy(images[-1].get_array().data.copy()), maps.weights(kind)[0].mean(dim=0)
        )
    finally:
        plt.close(fig)


def test_bad_requests_are_errors_that_name_the_value(maps, sdpa_model, tokenizer):
    with pytest.raises(ValueError, match="'self'"):
        maps.weights("self")
    with pytest.raises(ValueError, match="empty"):
        record_attention(sdpa_model, tokenizer, "  ")
    with pytest.raises(ValueError, match="got layer 5"):
        draw_attention_layer(maps, "cross", layer=5)


# ------------------------------------------------------------------------------------------ token labels
def test_byte_table_is_the_alphabet_byte_level_bpe_spells_bytes_with():
    assert set(byte_to_char().values()) == set(pre_tokenizers.ByteLevel.alphabet())
    text = " fährt über die Straße"
    spelled = "".join(byte_to_char()[byte] for byte in text.encode("utf-8"))
    pieces = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False).pre_tokenize_str(text)
    assert spelled == "".join(piece for piece, _ in pieces)


def test_labels_read_as_the_sentence_with_word_starts_marked(tokenizer):
    text = "Ein kleines Mädchen fährt mit einem Fahrrad."  # every character is whole in the tiny vocabulary
    labels = readable_tokens(tokenizer, tokenizer(text)["input_ids"])
    assert labels[-1] == "</s>"
    assert "".join(labels[:-1]).replace(WORD_START, " ").strip() == text
    # A character the vocabulary holds only as separate bytes (ü: C3 BC) shows them.
    assert "".join(readable_tokens(tokenizer, tokenizer("über")["input_ids"])) == f"{WORD_START}\\xc3\\xbcber</s>"
    assert readable_piece("ĠfÃ¤hrt") == f"{WORD_START}fährt"
    assert readable_piece("Ã") == "\\xc3"  # the first byte of a two-byte character, alone
    assert readable_piece("Ġ", byte_level=False) == "Ġ"  # not a byte-level tokenizer: kept as it is


# ------------------------------------------------------------------------------------------ command line
def test_command_writes_the_pngs_it_prints(model_dir, tmp_path, capsys):
    out = tmp_path / "figures"
    written = attention_maps.main(
        ["--model", str(model_dir), "--source", SOURCE, "--reference", REFERENCE, "--out", str(out)]
        + ["--layers", "2", "--kinds", "decoder-self", "cross", "--prefix", "dogs"]
    )
    assert written == [out / "dogs-decoder-self-layer2.png", out / "dogs-cross-layer2.png"]
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == f"target (reference): {REFERENCE}"
    assert printed[1:] == [str(path) for path in written]
    for path in written:
        assert path.read_bytes().startswith(PNG_SIGNATURE) and path.stat().st_size > 1000


def test_command_translates_when_no_reference_is_given(model_dir, tmp_path, capsys):
    written = attention_maps.main(
        ["--model", str(model_dir), "--source", SOURCE, "--out", str(tmp_path), "--beams", "1"]
        + ["--kinds", "encoder-self", "--layers", "1"]
    )
    assert [path.name for path in written] == ["attention-encoder-self-layer1.png"]
    assert capsys.readouterr().out.startswith("target (translation): ")
    assert written[0].read_bytes().startswith(PNG_SIGNATURE)


def test_command_refuses_a_layer_the_model_does_not_have(model_dir, tmp_path):
    with pytest.raises(ValueError, match="layers are numbered 1..2, got 3"):
        attention_maps.main(["--model", str(model_dir), "--source", SOURCE, "--out", str(tmp_path), "--layers", "3"])
