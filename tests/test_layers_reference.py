"""One encoder / decoder layer equals torch.nn.TransformerEncoderLayer / TransformerDecoderLayer
with copied weights (post-LN = `norm_first=False`, the paper's §3.1; pre-LN = `norm_first=True`)."""

import pytest
import torch
from torch import nn
from transformers.masking_utils import create_bidirectional_mask, create_causal_mask

from hf_vanilla_transformer.layers import DecoderLayer, EncoderLayer
from tests.helpers import tiny_config

D, H, FF = 32, 4, 64


def copy_attention(ours, theirs: nn.MultiheadAttention) -> None:
    q, k, v = theirs.in_proj_weight.chunk(3)
    qb, kb, vb = theirs.in_proj_bias.chunk(3)
    for proj, w, b in ((ours.q_proj, q, qb), (ours.k_proj, k, kb), (ours.v_proj, v, vb)):
        proj.weight.copy_(w)
        proj.bias.copy_(b)
    ours.out_proj.weight.copy_(theirs.out_proj.weight)
    ours.out_proj.bias.copy_(theirs.out_proj.bias)


def copy_ffn(ours, theirs) -> None:
    ours.feed_forward.fc1.load_state_dict(theirs.linear1.state_dict())
    ours.feed_forward.fc2.load_state_dict(theirs.linear2.state_dict())


def padded_inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 6, D, generator=g)
    mask = torch.ones(3, 6, dtype=torch.long)
    mask[1, 4:] = 0
    mask[2, 2:] = 0
    return x, mask


@pytest.mark.parametrize("norm_first, position", [(False, "post"), (True, "pre")])
@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
@torch.no_grad()
def test_encoder_layer_matches_torch(norm_first, position, implementation):
    torch.manual_seed(0)
    config = tiny_config(
        d_model=D, encoder_attention_heads=H, encoder_ffn_dim=FF, attention_bias=True, layer_norm_position=position
    )
    config._attn_implementation = implementation
    ours = EncoderLayer(config).eval()
    theirs = nn.TransformerEncoderLayer(
        D, H, FF, dropout=0.0, activation="relu", batch_first=True, norm_first=norm_first, layer_norm_eps=1e-5
    ).eval()
    copy_attention(ours.self_attn, theirs.self_attn)
    copy_ffn(ours, theirs)
    ours.self_attn_layer_norm.load_state_dict(theirs.norm1.state_dict())
    ours.final_layer_norm.load_state_dict(theirs.norm2.state_dict())

    x, mask = padded_inputs()
    hf_mask = create_bidirectional_mask(config=config, inputs_embeds=x, attention_mask=mask)
    got, _ = ours(x, hf_mask)
    expected = theirs(x, src_key_padding_mask=mask == 0)
    keep = mask.bool()  # torch's fast path leaves padded rows unspecified
    torch.testing.assert_close(got[keep], expected[keep], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("norm_first, position", [(False, "post"), (True, "pre")])
@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
@torch.no_grad()
def test_decoder_layer_matches_torch(norm_first, position, implementation):
    torch.manual_seed(0)
    config = tiny_config(
        d_model=D, decoder_attention_heads=H, decoder_ffn_dim=FF, attention_bias=True, layer_norm_position=position
    )
    config._attn_implementation = implementation
    ours = DecoderLayer(config, layer_idx=0).eval()
    theirs = nn.TransformerDecoderLayer(
        D, H, FF, dropout=0.0, activation="relu", batch_first=True, norm_first=norm_first, layer_norm_eps=1e-5
    ).eval()
    copy_attention(ours.self_attn, theirs.self_attn)
    copy_attention(ours.encoder_attn, theirs.multihead_attn)
    copy_ffn(ours, theirs)
    ours.self_attn_layer_norm.load_state_dict(theirs.norm1.state_dict())
    ours.encoder_attn_layer_norm.load_state_dict(theirs.norm2.state_dict())
    ours.final_layer_norm.load_state_dict(theirs.norm3.state_dict())

    memory, memory_mask = padded_inputs(seed=1)
    tgt = torch.randn(3, 5, D, generator=torch.Generator().manual_seed(2))
    causal = create_causal_mask(config, tgt, torch.ones(3, 5), None, position_ids=torch.arange(5)[None])
    cross = create_bidirectional_mask(
        config=config, inputs_embeds=tgt, attention_mask=memory_mask, encoder_hidden_states=memory
    )
    got, _, _ = ours(tgt, causal, memory, encoder_attention_mask=cross)
    expected = theirs(
        tgt,
        memory,
        tgt_mask=nn.Transformer.generate_square_subsequent_mask(5),
        tgt_is_causal=True,
        memory_key_padding_mask=memory_mask == 0,
    )
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_multi_head_attention_with_head_dim_differs_from_d_model_over_h():
    # Table 3 rows (A)/(B) vary d_k independently: projections map d_model -> h * d_k and back.
    config = tiny_config(d_model=D, head_dim=4)
    layer = EncoderLayer(config)
    assert layer.self_attn.q_proj.weight.shape == (H * 4, D)
    assert layer.self_attn.out_proj.weight.shape == (D, H * 4)
    x, mask = padded_inputs()
    out, _ = layer(x, create_bidirectional_mask(config=config, inputs_embeds=x, attention_mask=mask))
    assert out.shape == x.shape
