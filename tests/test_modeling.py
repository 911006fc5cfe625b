"""Behaviour of the model that the paper and the HF API promise, checked against references."""

import math

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModel, AutoModelForSeq2SeqLM

import hf_vanilla_transformer as hvt
from hf_vanilla_transformer.positional_encoding import sinusoidal_table
from hf_vanilla_transformer.seq2seq_loss import label_smoothed_nll_loss, shift_tokens_right
from tests.helpers import random_batch, tiny_model


# ---------------------------------------------------------------- save / load / tying (§3.4)
@torch.no_grad()
def test_save_load_gives_identical_logits(tmp_path):
    model = tiny_model()
    batch = random_batch()
    model.save_pretrained(tmp_path)
    for loader in (AutoModelForSeq2SeqLM, hvt.VanillaTransformerForConditionalGeneration):
        loaded = loader.from_pretrained(tmp_path).eval()
        assert torch.equal(loaded(**batch).logits, model(**batch).logits)
    base = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(base, hvt.VanillaTransformerModel)
    assert torch.equal(base(**batch).last_hidden_state, model.model(**batch).last_hidden_state)


def test_embeddings_are_one_tensor_stored_once(tmp_path):
    model = tiny_model(vocab_size=50)
    shared = model.model.shared.weight
    assert model.lm_head.weight is shared
    assert model.model.encoder.embed_tokens.weight is shared
    assert model.model.decoder.embed_tokens.weight is shared
    model.save_pretrained(tmp_path)
    with safe_open(tmp_path / "model.safetensors", "pt") as f:
        embedding_keys = [k for k in f.keys() if f.get_slice(k).get_shape() == [50, 32]]
    assert len(embedding_keys) == 1, embedding_keys
    loaded = hvt.VanillaTransformerForConditionalGeneration.from_pretrained(tmp_path)
    assert loaded.lm_head.weight is loaded.model.shared.weight


def test_untied_and_unshared_options():
    model = tiny_model(tie_word_embeddings=False, share_encoder_decoder_embeddings=False)
    enc, dec, head = (
        model.model.encoder.embed_tokens.weight,
        model.model.decoder.embed_tokens.weight,
        model.lm_head.weight,
    )
    assert enc is not dec and dec is not head and enc is not head
    assert not hasattr(model.model, "shared")
    model = tiny_model(tie_word_embeddings=True, share_encoder_decoder_embeddings=False)
    assert model.lm_head.weight is model.model.decoder.embed_tokens.weight
    assert model.model.encoder.embed_tokens.weight is not model.model.decoder.embed_tokens.weight


def test_initialisation():
    model = hvt.VanillaTransformerForConditionalGeneration(hvt.VanillaTransformerConfig.small(vocab_size=4000))
    emb = model.model.shared.weight
    assert emb[1:].std().item() == pytest.approx(256**-0.5, rel=0.02)  # N(0, d^-1/2)
    assert torch.count_nonzero(emb[0]) == 0  # padding row
    w = model.model.encoder.layers[
        0
    ].feed_forward.fc1.weight  # Xavier uniform: U(-a, a), a = sqrt(6 / (fan_in + fan_out))
    bound = math.sqrt(6 / (256 + 1024))
    assert w.abs().max() <= bound and w.abs().max() > 0.95 * bound
    assert abs(w.std().item() - bound / math.sqrt(3)) < 0.02 * bound


# ---------------------------------------------------------------- forward semantics
@torch.no_grad()
def test_embedding_is_scaled_and_positions_added():
    model = tiny_model()
    batch = random_batch()
    out = model(**batch, output_hidden_states=True)
    expected = model.model.shared(batch["input_ids"]) * math.sqrt(32) + sinusoidal_table(64, 32)[:7]
    torch.testing.assert_close(out.encoder_hidden_states[0], expected)


@torch.no_grad()
def test_padding_does_not_change_the_result():
    model = tiny_model()
    batch = random_batch()
    row, length = 2, int(batch["attention_mask"][2].sum())
    alone = model(
        input_ids=batch["input_ids"][row : row + 1, :length],
        decoder_input_ids=batch["decoder_input_ids"][row : row + 1],
    )
    padded = model(**batch)
    torch.testing.assert_close(padded.logits[row], alone.logits[0], rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_decoder_cannot_see_the_future():
    # §3.2.3: changing target token t must not change predictions at positions < t.
    model = tiny_model()
    batch = random_batch()
    logits = model(**batch).logits
    batch["decoder_input_ids"][:, 3] = 7
    changed = model(**batch).logits
    torch.testing.assert_close(changed[:, :3], logits[:, :3], rtol=0, atol=0)
    assert not torch.allclose(changed[:, 3:], logits[:, 3:])


@torch.no_grad()
def test_encoder_is_bidirectional_on_unpadded_input():
    # Guards against SDPA silently treating the encoder as causal (`is_causal` must be False).
    for implementation in ("eager", "sdpa"):
        model = tiny_model(attn_implementation=implementation)
        ids = torch.randint(4, 64, (1, 6))
        first = model.model.encoder(input_ids=ids).last_hidden_state[0, 0]
        ids[0, -1] = (ids[0, -1] + 1) % 60 + 4
        assert not torch.allclose(model.model.encoder(input_ids=ids).last_hidden_state[0, 0], first)


@torch.no_grad()
def test_eager_equals_sdpa():
    batch = random_batch()
    eager = tiny_model(attn_implementation="eager")
    sdpa = tiny_model(attn_implementation="sdpa")
    assert sdpa.config._attn_implementation == "sdpa"
    torch.testing.assert_close(sdpa(**batch).logits, eager(**batch).logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(layer_norm_position="pre"),
        dict(position_embedding_type="learned"),
        dict(activation_function="gelu"),
        dict(head_dim=4),
    ],
)
def test_options_train_and_round_trip(overrides, tmp_path):
    model = tiny_model(**overrides).train()
    batch = random_batch()
    labels = batch.pop("decoder_input_ids")
    loss = model(**batch, labels=labels).loss
    loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad), "unused parameters"
    model.eval().save_pretrained(tmp_path)
    loaded = hvt.VanillaTransformerForConditionalGeneration.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(loaded(**batch, labels=labels).logits, model(**batch, labels=labels).logits)
    if overrides.get("layer_norm_position") == "pre":
        assert model.model.encoder.layer_norm is not None and model.model.decoder.layer_norm is not None


def test_gradient_checkpointing_gives_the_same_gradients():
    batch = random_batch()
    labels = batch.pop("decoder_input_ids")
    grads = []
    for checkpointing in (False, True):
        model = tiny_model().train()
        if checkpointing:
            model.activation_checkpointing_enable()
        model(**batch, labels=labels).loss.backward()
        grads.append(model.model.encoder.layers[0].feed_forward.fc1.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


# ---------------------------------------------------------------- loss (§5.4)
def test_label_smoothed_loss_matches_hand_computation():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5)
    labels = torch.tensor([[1, 4, 2], [3, 2, -100]])
    eps, vocab = 0.1, 5
    logp = logits.log_softmax(-1)
    total, count = 0.0, 0
    for b in range(2):
        for t in range(3):
            y = labels[b, t].item()
            if y == -100 or y == 0:
                continue
            q = torch.full((vocab,), eps / vocab)
            q[y] += 1 - eps
            total += -(q * logp[b, t]).sum().item()
            count += 1
    got = label_smoothed_nll_loss(logits, labels, eps, pad_token_id=0)
    assert got.item() == pytest.approx(total / count, rel=1e-6)


def test_zero_smoothing_is_nll_and_padding_is_ignored():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 6)
    labels = torch.tensor([[1, 4, 2, 0], [3, 2, 0, 0]])  # 0 = <pad>
    nll = torch.nn.functional.cross_entropy(logits.view(-1, 6), labels.masked_fill(labels == 0, -100).view(-1))
    assert label_smoothed_nll_loss(logits, labels, 0.0, pad_token_id=0).item() == pytest.approx(nll.item(), rel=1e-6)
    # Trainer's gradient accumulation: sum divided by the number of target tokens it passes.
    summed = label_smoothed_nll_loss(logits, labels, 0.0, pad_token_id=0, num_items_in_batch=1)
    assert summed.item() == pytest.approx(nll.item() * 5, rel=1e-6)


def test_model_loss_takes_label_smoothing_and_shifts_labels():
    model = tiny_model()
    batch = random_batch()
    labels = batch.pop("decoder_input_ids")
    out = model(**batch, labels=labels, label_smoothing=0.1)
    plain = model(**batch, labels=labels)
    decoder_input_ids = shift_tokens_right(labels, 0, 1)
    assert torch.equal(decoder_input_ids[:, 0], torch.ones(3, dtype=torch.long))
    logits = model(**batch, decoder_input_ids=decoder_input_ids).logits
    assert out.loss.item() == pytest.approx(label_smoothed_nll_loss(logits, labels, 0.1, 0).item(), rel=1e-6)
    assert plain.loss.item() == pytest.approx(label_smoothed_nll_loss(logits, labels, 0.0, 0).item(), rel=1e-6)
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\), got 1.5"):
        model(**batch, labels=labels, label_smoothing=1.5)
