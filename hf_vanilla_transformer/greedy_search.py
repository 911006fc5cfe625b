"""Greedy search written out, so that each sentence leaves the batch as soon as it has ended.

`generate(num_beams=1)` runs transformers' greedy loop, which keeps every sentence of a batch in the batch
until the last one is done: a sentence that ended at its third token is fed padding through the decoder, over
every layer, for as many steps as the batch's longest translation. `greedy_search` takes the same tokens (tested
token for token against transformers' loop in `tests/test_greedy_search.py`) and differs in cost only: a
sentence that has ended leaves the batch and the KV cache, and the next steps run on the rest.
`PaperGenerationMixin.generate` (`generation.py`) uses it for the calls `decoding_call.DecodingCall.of` covers.

At every step, each sentence still decoding appends its most probable next token (no `</s>` before
`min_new_tokens`). It ends with `</s>`, or at its length limit (§6.1's input length + 50, or the call's
`max_new_tokens`). The result is laid out as transformers lays it out: the decoder start token, the tokens (with
`</s>`), then `pad_token_id` as filler up to the batch's longest result.

The most probable token is `first_argmax`'s: `argmax` computed another way, because torch's CPU `argmax` compares one
element at a time and took about 5% of a greedy step (a (64, 8000) argmax per step;
`benchmarks/results/decoding-profile-session11.txt`).
"""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicCache
from transformers.modeling_outputs import BaseModelOutput

from .beam_cache import BeamSearchCache, beam_self_attention_cache
from .decoding_call import DecodingCall

ARGMAX_BLOCK = 128
"""Width of the blocks `first_argmax` takes the maximum of first."""


def first_argmax(scores: torch.Tensor) -> torch.Tensor:
    """scores (B, V) -> (B,): each row's index of its largest score, the first one where several are equal: exactly
    `scores.argmax(dim=-1)` (tested against it, ties, infinities and NaN included), computed faster on the CPU.

    torch's CPU `argmax` compares one element at a time, while its `amax` (the maximum without its index) uses the
    CPU's vector instructions. So the row is cut into blocks of `ARGMAX_BLOCK` scores: `amax` gives each block's
    largest score, `argmax` over those few numbers the first block that holds the row's largest, and `argmax`
    within that one block its place; the scores that do not fill a last block are compared separately. At the
    decoding shapes it is several times faster than `argmax` (1.5x-6x from 64 rows up; with 8 rows a few
    microseconds slower; `benchmarks/bench_argmax.py`). Elsewhere than on the CPU, and for rows shorter than two
    blocks, it is `argmax`.
    """
    batch, width = scores.shape
    blocks = width // ARGMAX_BLOCK
    if scores.device.type != "cpu" or blocks < 2:
        return scores.argmax(dim=-1)
    body = scores[:, : blocks * ARGMAX_BLOCK].reshape(batch, blocks, ARGMAX_BLOCK)
    block = body.amax(dim=-1).argmax(dim=-1)  # (B,) the first block holding the row's largest score
    best = block * ARGMAX_BLOCK + body[torch.arange(batch, device=scores.device), block].argmax(dim=-1)
    if blocks * ARGMAX_BLOCK < width:  # the scores after the last whole block win only if larger (or NaN first)
        tail = scores[:, blocks * ARGMAX_BLOCK :]
        tail_best = tail.argmax(dim=-1)
        tail_score = tail.gather(1, tail_best[:, None]).squeeze(1)
        best_score = scores.gather(1, best[:, None]).squeeze(1)
        tail_wins = (tail_score > best_score) | (tail_score.isnan() & ~best_score.isnan())
        best = torch.where(tail_wins, blocks * ARGMAX_BLOCK + tail_best, best)
    return best


@torch.no_grad()
def greedy_search(
    model, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None, call: DecodingCall
) -> torch.LongTensor:
    """Translate `input_ids` (B, S) greedily, as described above; returns (B, T) token ids."""
    cfg = model.config
    eos = call.eos_token_id
    fill = eos if call.pad_token_id is None else call.pad_token_id  # transformers pads with </s> when it has no pad
    limits, attention_mask, encoded = call.encode(model, input_ids, attention_mask)

    batch, longest = input_ids.shape[0], int(limits.max())
    output = torch.full((batch, longest), fill, dtype=torch.long, device=input_ids.device)
    output[:, 0] = call.decoder_start_token_id
    active = torch.arange(batch, device=input_ids.device)  # the sentences still decoding: their rows in `output`
    encoder_rows, mask_rows = encoded, attention_mask
    # One row per sentence: the cross-attention K/V are per sentence, so sentences can leave them.
    cache = BeamSearchCache(beam_self_attention_cache(cfg), DynamicCache(config=cfg), beams_per_source=1)
    length = 1  # tokens so far, with the start token
    while active.numel() > 0 and length < longest:
        logits = model(
            decoder_input_ids=output[active, length - 1 : length],
            encoder_outputs=BaseModelOutput(last_hidden_state=encoder_rows),
            attention_mask=mask_rows,
            cache=cache,
            use_cache=True,
        ).logits[:, -1, :]
        if length - 1 < call.min_new_tokens:
            logits[:, eos] = -float("inf")
        tokens = first_argmax(logits)
        output[active, length] = tokens
        length += 1

        # Sentences that ended leave: their rows leave the batch and the cache.
        going_on = (tokens != eos) & (length < limits[active])
        if not bool(going_on.all()):
            stay = going_on.nonzero().squeeze(1)
            active, encoder_rows, mask_rows = active[stay], encoder_rows[stay], mask_rows[stay]
            cache.select_sources(stay)
            cache.reorder_cache(stay)
    return output[:, :length]
