"""Beam search (§6.1) written out, so that each sentence leaves the batch as soon as its translation is final.

`generate(num_beams=k)` runs transformers' beam search, which keeps every sentence of a batch in the batch
until the last one is done: a batch costs as many decoder steps, over all of its B * k rows, as its longest
search. `beam_search` is the same search, candidate for candidate and score for score (tested token for token
against transformers' loop in `tests/test_beam_search.py`), with one difference in cost: a sentence whose
result can no longer change leaves the batch, its rows leave the KV cache, and the next steps run on the rest.
`PaperGenerationMixin.generate` (`generation.py`) uses it for the calls it covers (`decoding_call.DecodingCall.of`:
beam search with the decoding options of §6.1) and transformers' loop for every other call. Greedy search has a
loop of the same kind in `greedy_search.py`.

The search, at every step, for each sentence and its k beams:

1. every beam proposes every next token: a candidate's score is its beam's log-probability plus the token's;
2. the 2k best candidates are kept (2k, so that k remain to continue if up to k of them end here);
3. those of the k best that end (with `</s>`, or at the sentence's length limit, §6.1's input length + 50)
   become finished hypotheses, ranked by score / lp(length); the k best finished hypotheses are kept. lp is
   GNMT's ((5 + length) / 6) ** alpha (the paper's, `length_penalty_form="gnmt"`) or transformers'
   length ** alpha (`"hf"`);
4. the k best candidates that did not end are the next step's beams;
5. the sentence is done once it has k finished hypotheses and its best beam, ranked as if it ended now, would
   not beat the worst of them (transformers' rule for `early_stopping=False`).

The result is each sentence's best finished hypothesis, laid out as `generate()` lays it out: the decoder start
token, the tokens (with `</s>`), then `</s>` as filler up to the batch's longest result (`pad_token_id`
instead when it is not 0; transformers' choice).
"""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicCache
from transformers.modeling_outputs import BaseModelOutput

from .beam_cache import BeamSearchCache, beam_self_attention_cache
from .decoding_call import DecodingCall

NEVER = -1.0e9
"""The score that keeps a candidate out of a ranking (transformers' constant, so that rankings agree)."""


def gnmt_rescale(lengths: torch.Tensor | int, alpha: float) -> torch.Tensor | float:
    """Factor turning transformers' `score / len**alpha` into GNMT's `score / ((5 + len) / 6)**alpha`."""
    return (lengths**alpha) / (((5 + lengths) / 6) ** alpha)


@torch.no_grad()
def beam_search(
    model, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None, call: DecodingCall
) -> torch.LongTensor:
    """Translate `input_ids` (B, S) with the beam search described above; returns (B, T) token ids."""
    cfg = model.config
    k, alpha, device = call.num_beams, call.length_penalty, input_ids.device
    eos, pad = call.eos_token_id, call.pad_token_id
    fill = pad or eos  # after each result, as transformers fills (</s> when the padding id is 0)
    limits, attention_mask, encoded = call.encode(model, input_ids, attention_mask)  # limits: §6.1's length + 50
    batch = input_ids.shape[0]
    longest = width = int(limits.max())

    # Finished hypotheses of every sentence (k each, best first) and their lengths.
    finished = torch.full((batch, k, width), fill, dtype=torch.long, device=device)
    finished[:, :, 0] = call.decoder_start_token_id
    finished_scores = torch.full((batch, k), NEVER, device=device)
    finished_lengths = torch.zeros((batch, k), dtype=torch.long, device=device)
    is_finished = torch.zeros((batch, k), dtype=torch.bool, device=device)

    # The sentences still searching (`active`: their numbers in the batch) and their beams.
    active = torch.arange(batch, device=device)
    beams = finished.clone()
    beam_scores = torch.zeros((batch, k), device=device)
    beam_scores[:, 1:] = NEVER  # the k beams start equal: only the first proposes at the first step
    encoder_rows = encoded.repeat_interleave(k, dim=0)
    mask_rows = attention_mask.repeat_interleave(k, dim=0)
    cache = BeamSearchCache(beam_self_attention_cache(cfg), DynamicCache(config=cfg), k)
    ends_here = torch.arange(2 * k, device=device) < k  # only the k best candidates may finish
    length = 1  # tokens so far, with the start token
    while active.numel() > 0 and length < longest:
        n = active.numel()
        logits = model(
            decoder_input_ids=beams[:, :, length - 1].reshape(n * k, 1),
            encoder_outputs=BaseModelOutput(last_hidden_state=encoder_rows),
            attention_mask=mask_rows,
            cache=cache,
            use_cache=True,
        ).logits[:, -1, :]
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        if length - 1 < call.min_new_tokens:
            log_probs[:, eos] = -float("inf")

        # 1-2: the 2k best candidates, each a beam and a token.
        top_scores, parents, tokens = best_candidates(log_probs.view(n, k, -1), beam_scores, 2 * k)
        candidates = beams.gather(1, parents[:, :, None].expand(-1, -1, width)).clone()
        candidates[:, :, length] = tokens
        ends = (tokens == eos) | (length + 1 >= limits[active])[:, None]

        # 4: the next beams, the best candidates that go on.
        going_on = top_scores + ends.float() * NEVER
        next_top = torch.topk(going_on, k)[1]
        beams = candidates.gather(1, next_top[:, :, None].expand(-1, -1, width))
        beam_scores = going_on.gather(1, next_top)
        parent_rows = (parents.gather(1, next_top) + torch.arange(n, device=device)[:, None] * k).view(-1)

        # 3: candidates that end among the k best join the finished hypotheses, ranked with the length penalty.
        generated = length  # new tokens, with the one that ends it
        ranked = top_scores * gnmt_rescale(generated, alpha) if call.gnmt else top_scores
        ranked = ranked / (generated**alpha) + (~(ends & ends_here)) * NEVER
        old_scores = finished_scores[active]
        keep = torch.topk(torch.cat((old_scores, ranked), dim=1), k)[1]
        finished[active] = _best_of(finished[active], candidates, keep)
        finished_scores[active] = old_scores = _best_of(old_scores, ranked, keep)
        finished_lengths[active] = _best_of(finished_lengths[active], torch.full_like(tokens, generated), keep)
        is_finished[active] = _best_of(is_finished[active], ends & ends_here, keep)
        length += 1

        # 5: done when the best beam, ranked as if it ended now, cannot beat the worst finished hypothesis.
        best = beam_scores[:, :1] * gnmt_rescale(length - 1, alpha) if call.gnmt else beam_scores[:, :1]
        best = best / ((length - 1) ** alpha)
        worst = torch.where(is_finished[active], old_scores.min(dim=1, keepdim=True)[0], NEVER)
        searching = torch.any(best > worst, dim=-1)

        # Sentences that are done leave: their rows leave the batch and the cache.
        if not bool(searching.all()):
            stay = searching.nonzero().squeeze(1)
            active, beams, beam_scores = active[stay], beams[stay], beam_scores[stay]
            rows = (stay[:, None] * k + torch.arange(k, device=device)).view(-1)
            encoder_rows, mask_rows = encoder_rows[rows], mask_rows[rows]
            parent_rows = parent_rows.view(n, k)[stay].view(-1)  # rows of the cache as it is, before it shrinks
            cache.select_sources(stay)
        cache.reorder_cache(parent_rows)

    best_lengths = finished_lengths[:, 0]
    return finished[:, 0, : 1 + int(best_lengths.max())]


def best_candidates(
    log_probs: torch.Tensor, beam_scores: torch.Tensor, count: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The `count` best candidates of each sentence: log_probs (n, k, V) of each beam's next token, beam_scores
    (n, k) -> their scores (beam score + token log-probability), beams and tokens, each (n, count), best first.

    transformers adds every beam's score to all V of its log-probabilities and ranks the k * V sums
    (`_get_top_k_continuations`). Adding one number to a beam's row keeps its order, so a sum ranked among the
    sentence's `count` best comes from its own beam's `count` best log-probabilities: those are taken first, and
    only k * count sums are made and ranked (the same candidates and scores; tied scores may come in another
    order). With 64 sentences, k = 4 and 8,000 tokens, this part of a step, timed alone from the logits, took 4.7 ms
    instead of 11.7 ms on an AVX2-only CPU, but whole beam-4 calls of 25 such steps took only 1.02x less time
    (`benchmarks/bench_beam_candidates.py`): the full (n, k * V) sum it saves is 8 MB written at every step.
    """
    n, k, vocab = log_probs.shape
    per_beam = min(count, vocab)
    beam_best, beam_tokens = torch.topk(log_probs, per_beam)  # (n, k, per_beam) each
    sums = (beam_best + beam_scores[:, :, None]).view(n, k * per_beam)
    top_scores, top = torch.topk(sums, count)
    return top_scores, top // per_beam, beam_tokens.view(n, k * per_beam).gather(1, top)


def _best_of(kept: torch.Tensor, new: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """The entries `keep` (n, k) of `kept` and `new` side by side along dim 1 (sentences' finished hypotheses,
    then the step's candidates), for a tensor of (n, *) per sentence."""
    merged = torch.cat((kept, new), dim=1)
    index = keep.view(*keep.shape, *[1] * (merged.dim() - 2)).expand(-1, -1, *merged.shape[2:])
    return merged.gather(1, index)
