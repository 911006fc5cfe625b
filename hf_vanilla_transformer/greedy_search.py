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
"""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicCache
from transformers.modeling_outputs import BaseModelOutput

from .beam_cache import BeamSearchCache, beam_self_attention_cache
from .decoding_call import DecodingCall


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
        tokens = logits.argmax(dim=-1)
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
