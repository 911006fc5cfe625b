"""No compute on padding (`config.skip_padding`, `packing.py`): the packed forward against the plain one.

Each comparison runs the same weights both ways and also counts `Packing.pack` calls, so that it cannot pass
because neither run packed.
"""

import json

import pytest
import torch

import hf_vanilla_transformer as hvt
from hf_vanilla_transformer.packing import Packing, source_packing, target_packing
from tests.helpers import random_batch, tiny_model

TOL = dict(rtol=1e-5, atol=1e-5)

OPTIONS = [
    pytest.param("eager", {}, id="eager"),
    pytest.param("sdpa", {}, id="sdpa"),
    pytest.param("eager", {"layer_norm_position": "pre"}, id="eager-pre-ln"),
    pytest.param("sdpa", {"layer_norm_position": "pre"}, id="sdpa-pre-ln"),
    pytest.param("eager", {"attention_score": "additive"}, id="additive"),
    pytest.param("sdpa", {"attention_bias": True, "activation_function": "gelu"}, id="sdpa-bias-gelu"),
]


@pytest.fixture
def pack_calls(monkeypatch):
    """A list that gets one entry per `Packing.pack` call."""
    calls = []
    pack = Packing.pack

    def counting_pack(self, x):
        calls.append(tuple(x.shape))
        return pack(self, x)

    monkeypatch.setattr(Packing, "pack", counting_pack)
    return calls


def padded_batch():
    """Source padding in rows 1-3; labels with trailing -100 in rows 1 and 3, trailing padding ids in row 2
    (the loss ignores both), and an ignored label in the middle of row 3."""
    batch = random_batch(batch=4, src_len=9, tgt_len=7, seed=1)
    labels = batch.pop("decoder_input_ids")
    labels[0, 0] = 5  # row 0: every position labelled
    labels[1, 4:] = -100
    labels[2, 5:] = 0  # pad_token_id
    labels[3, 1] = -100
    labels[3, 3:] = -100
    return batch, labels


def kept_positions(labels):
    """Positions up to each row's last counted label: the ones the packed forward computes."""
    counted = (labels != -100) & (labels != 0)
    last = torch.where(counted, torch.arange(labels.shape[1]), -1).amax(dim=1, keepdim=True)
    return torch.arange(labels.shape[1]) <= last


def run(model, skip_padding, pack_calls, **inputs):
    """A training forward and backward: outputs and every parameter's gradient, after checking that
    it packed exactly when asked to."""
    model.config.skip_padding = skip_padding
    model.zero_grad()
    pack_calls.clear()
    output = model(**inputs)
    output.loss.backward()
    assert bool(pack_calls) == skip_padding, pack_calls
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return output, grads


def assert_same_loss_and_gradients(packed, packed_grads, plain, plain_grads):
    torch.testing.assert_close(packed.loss, plain.loss, **TOL)
    assert packed_grads.keys() == plain_grads.keys()
    for name in plain_grads:
        torch.testing.assert_close(packed_grads[name], plain_grads[name], **TOL, msg=name)


@pytest.mark.parametrize("implementation, overrides", OPTIONS)
def test_packed_training_forward_equals_the_plain_one(implementation, overrides, pack_calls):
    model = tiny_model(attn_implementation=implementation, **overrides).train()
    batch, labels = padded_batch()
    inputs = dict(**batch, labels=labels, label_smoothing=0.1)
    packed, packed_grads = run(model, True, pack_calls, **inputs)
    plain, plain_grads = run(model, False, pack_calls, **inputs)

    assert_same_loss_and_gradients(packed, packed_grads, plain, plain_grads)
    assert len(plain_grads) == sum(1 for p in model.parameters() if p.requires_grad), "unused parameters"

    kept = kept_positions(labels)
    assert not kept.all() and kept.any(dim=1).all()
    torch.testing.assert_close(packed.logits[kept], plain.logits[kept], **TOL)
    assert torch.count_nonzero(packed.logits[~kept]) == 0
    tokens = batch["attention_mask"].bool()
    encoded, expected = packed.encoder_last_hidden_state, plain.encoder_last_hidden_state
    torch.testing.assert_close(encoded[tokens], expected[tokens], **TOL)
    assert torch.count_nonzero(encoded[~tokens]) == 0


def test_the_encoder_and_decoder_pack_and_attention_unpacks(pack_calls, monkeypatch):
    unpacked = []
    unpack = Packing.unpack
    monkeypatch.setattr(Packing, "unpack", lambda self, x: unpacked.append(tuple(x.shape)) or unpack(self, x))
    model = tiny_model()
    batch, labels = padded_batch()
    source_tokens = int(batch["attention_mask"].sum())
    target_kept = int(kept_positions(labels).sum())
    model(**batch, labels=labels)
    d_model, inner, vocab = 32, 32, model.config.vocab_size
    # encoder input; decoder input and encoder states (once each); attention outputs before W^O (2 + 2 * 2
    # layers); decoder output and labels before the pre-softmax layer and the loss
    assert sorted(pack_calls) == sorted(
        [(4, 9, d_model), (4, 7, d_model), (4, 9, d_model)]
        + [(4, 9, inner)] * 2
        + [(4, 7, inner)] * 4
        + [(4, 7, d_model), (4, 7)]
    )
    # the projections' outputs: q, k, v of each encoder layer; q, k, v of the decoder's self-attention,
    # q of its cross-attention and k, v of the source; the encoder and decoder outputs; the logits
    assert sorted(unpacked) == sorted(
        [(source_tokens, inner)] * (3 * 2 + 2 * 2)
        + [(target_kept, inner)] * (4 * 2)
        + [(source_tokens, d_model), (target_kept, d_model), (target_kept, vocab)]
    )


def test_gradient_checkpointing_with_packing(pack_calls):
    batch, labels = padded_batch()
    model = tiny_model().train()
    model.activation_checkpointing_enable()
    packed, packed_grads = run(model, True, pack_calls, **batch, labels=labels)
    plain, plain_grads = run(model, False, pack_calls, **batch, labels=labels)
    assert_same_loss_and_gradients(packed, packed_grads, plain, plain_grads)


def test_a_decoder_attention_mask_gives_the_same_loss(pack_calls):
    model = tiny_model().train()
    batch, labels = padded_batch()
    inputs = dict(**batch, labels=labels, decoder_attention_mask=kept_positions(labels).long())
    packed, packed_grads = run(model, True, pack_calls, **inputs)
    plain, plain_grads = run(model, False, pack_calls, **inputs)
    assert_same_loss_and_gradients(packed, packed_grads, plain, plain_grads)


def test_labels_without_right_padding_pack_only_the_source(pack_calls):
    model = tiny_model().train()
    batch, labels = padded_batch()
    labels = labels.clamp(min=4)  # every position labelled
    packed, packed_grads = run(model, True, pack_calls, **batch, labels=labels)
    assert (4, 7, 32) not in pack_calls  # the decoder's positions are all kept
    plain, plain_grads = run(model, False, pack_calls, **batch, labels=labels)
    assert_same_loss_and_gradients(packed, packed_grads, plain, plain_grads)
    torch.testing.assert_close(packed.logits, plain.logits, **TOL)


@torch.no_grad()
def test_forward_without_labels_packs_the_encoder_only(pack_calls):
    model = tiny_model()
    batch = random_batch(batch=4, src_len=9, tgt_len=7)
    outputs = []
    for skip_padding in (True, False):
        model.config.skip_padding = skip_padding
        pack_calls.clear()
        outputs.append(model(**batch).logits)
        # the encoder's input and its 2 attention outputs; the decoder keeps a cache, so it does not pack
        assert pack_calls == ([(4, 9, 32)] * 3 if skip_padding else [])
    torch.testing.assert_close(outputs[0], outputs[1], **TOL)


@torch.no_grad()
def test_no_padding_or_per_layer_outputs_take_the_plain_path(pack_calls):
    model = tiny_model()
    batch = random_batch(batch=3, src_len=7, tgt_len=5)
    labels = batch.pop("decoder_input_ids")
    full = {"input_ids": batch["input_ids"][:1], "attention_mask": batch["attention_mask"][:1]}
    model(**full, labels=labels[:1])
    assert pack_calls == []

    labels[1:, -1] = -100
    hidden = model(**batch, labels=labels, output_hidden_states=True, output_attentions=True)
    assert pack_calls == [(3, 5, 32), (3, 5)]  # only the pre-softmax layer and the loss
    model.config.skip_padding = False
    expected = model(**batch, labels=labels, output_hidden_states=True, output_attentions=True)
    torch.testing.assert_close(hidden.loss, expected.loss, **TOL)
    for got, want in zip(hidden.encoder_hidden_states, expected.encoder_hidden_states, strict=True):
        torch.testing.assert_close(got, want, **TOL)
    for got, want in zip(hidden.cross_attentions, expected.cross_attentions, strict=True):
        torch.testing.assert_close(got, want, **TOL)


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("num_beams", [1, 4])
@torch.no_grad()
def test_generation_is_unchanged(implementation, num_beams, pack_calls):
    model = tiny_model(attn_implementation=implementation)
    batch = random_batch(batch=4, src_len=9, tgt_len=2)
    batch.pop("decoder_input_ids")
    sequences = []
    for skip_padding in (True, False):
        model.config.skip_padding = skip_padding
        pack_calls.clear()
        sequences.append(model.generate(**batch, num_beams=num_beams, max_new_tokens=10, do_sample=False))
        assert bool(pack_calls) == skip_padding
    assert torch.equal(sequences[0], sequences[1])


def test_packing_moves_between_layouts():
    keep = torch.tensor([[1, 1, 0], [1, 0, 0]])
    packing = Packing(keep)
    x = torch.arange(12.0).view(2, 3, 2)
    packed = packing.pack(x)
    assert torch.equal(packed, torch.tensor([[0.0, 1.0], [2.0, 3.0], [6.0, 7.0]]))
    assert torch.equal(packing.unpack(packed), x * keep[..., None])
    with pytest.raises(ValueError, match="cannot pack"):
        packing.pack(torch.zeros(2, 4, 2))


def test_which_positions_are_kept():
    assert source_packing(torch.ones(2, 3)) is None  # no padding
    assert source_packing(torch.tensor([[1, 1], [0, 0]])) is None  # a source without tokens
    assert source_packing(None) is None
    assert source_packing(torch.tensor([[1, 1], [1, 0]])).index.tolist() == [0, 1, 2]
    assert target_packing(torch.ones(2, 3, dtype=torch.bool)) is None
    needed = torch.tensor([[True, False, True, False], [False, True, False, False]])
    assert target_packing(needed).index.tolist() == [0, 1, 2, 4, 5]  # up to each row's last needed position


def test_skip_padding_is_a_saved_config_field(tmp_path):
    assert hvt.VanillaTransformerConfig().skip_padding is True
    model = tiny_model(skip_padding=False)
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["skip_padding"] is False
    assert hvt.VanillaTransformerForConditionalGeneration.from_pretrained(tmp_path).config.skip_padding is False
