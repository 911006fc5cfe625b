"""Beam search (§6.1) written out, so that each sentence leaves the batch as soon as its translation is final.

`generate(num_beams=k)` runs transformers' beam search, which keeps every sentence of a batch in the batch
until the last one is done: a batch costs as many decoder steps, over all of its B * k rows, as its longest
search. `beam_search` is the same search, candidate for candidate and score for score (tested token for token
against transformers' loop in `tests/test_beam_search.py`), with one difference in cost: a sentence whose
result can no longer change leaves the batch, its rows leave the KV cache, and the next steps run on the rest.
`PaperGenerationMixin.generate` (`generation.py`) uses it for the calls it covers (`BeamSearchCall.of`: beam
search with the decoding options of §6.1) and transformers' loop for every other call.

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

import copy
from dataclasses import dataclass

import torch
from transformers import GenerationConfig
from transformers.cache_utils import DynamicCache
from transformers.modeling_outputs import BaseModelOutput

from .beam_cache import BeamSearchCache, beam_self_attention_cache

DEFAULT_MAX_NEW_TOKENS = 20
"""transformers' output length when a call sets none (and the model's generation config has no per-sentence one)."""
NEVER = -1.0e9
"""The score that keeps a candidate out of a ranking (transformers' constant, so that rankings agree)."""


def gnmt_rescale(lengths: torch.Tensor | int, alpha: float) -> torch.Tensor | float:
    """Factor turning transformers' `score / len**alpha` into GNMT's `score / ((5 + len) / 6)**alpha`."""
    return (lengths**alpha) / (((5 + lengths) / 6) ** alpha)


def source_lengths(source: torch.Tensor, attention_mask: torch.Tensor | None, pad_token_id: int | None) -> torch.Tensor:
    """Each sentence's length in tokens, for §6.1's limit of input length + 50: the attention mask's count, else
    the tokens that are not padding."""
    if attention_mask is not None:
        return attention_mask.sum(dim=1)
    if pad_token_id is not None:
        return (source != pad_token_id).sum(dim=1)
    return torch.full((source.shape[0],), source.shape[1], device=source.device)


@dataclass(frozen=True)
class BeamSearchCall:
    """The settings of a `generate()` call that `beam_search` decodes exactly as transformers would."""

    num_beams: int
    length_penalty: float
    gnmt: bool
    max_length: int  # tokens including the decoder start token, for the whole batch
    max_new_tokens_over_input: int | None  # §6.1's per-sentence limit, when no length was given
    min_new_tokens: int
    decoder_start_token_id: int
    eos_token_id: int
    pad_token_id: int | None

    # GenerationConfig fields this search implements; any other non-default value means transformers' loop.
    SETTINGS = frozenset(
        {
            "num_beams",
            "length_penalty",
            "length_penalty_form",
            "max_new_tokens_over_input",
            "max_new_tokens",
            "max_length",
            "min_new_tokens",
            "bos_token_id",
            "eos_token_id",
            "pad_token_id",
            "decoder_start_token_id",
            "use_cache",
            "transformers_version",
            "_from_model_config",
        }
    )

    # Options given with the value that switches them off (`do_sample=False`, ...): as if not given.
    OFF = {
        "do_sample": False,
        "num_return_sequences": 1,
        "early_stopping": False,
        "use_cache": True,
        "return_dict_in_generate": False,
        "output_scores": False,
        "output_logits": False,
        "output_attentions": False,
        "output_hidden_states": False,
        "repetition_penalty": 1.0,
        "no_repeat_ngram_size": 0,
        "min_length": 0,
        "renormalize_logits": False,
        "remove_invalid_values": False,
    }

    @classmethod
    def of(cls, model, config: GenerationConfig, kwargs: dict, gnmt: bool) -> BeamSearchCall | None:
        """The settings of `model.generate(generation_config=config, **kwargs)` if `beam_search` covers the call,
        else `None` (transformers' loop then decodes it).

        Covered: beam search (num_beams > 1) over `input_ids` (+ `attention_mask`), one result per sentence, with
        no option but the length penalty, the length limits and the special tokens, by a model in eval mode with
        the eager or SDPA attention kernel, one `</s>` and its own padding id."""
        merged = copy.deepcopy(config)
        model_inputs = merged.update(**kwargs)
        if set(model_inputs) - {"input_ids", "attention_mask"}:
            return None
        changed = {
            key
            for key, value in merged.to_diff_dict().items()
            if value is not None and not (key in cls.OFF and value == cls.OFF[key])
        }
        if changed - cls.SETTINGS or not isinstance(merged.num_beams, int) or merged.num_beams < 2:
            return None
        if merged.use_cache is False or not isinstance(merged.eos_token_id, int) or merged.min_length:
            return None
        if merged.pad_token_id not in (None, model.config.pad_token_id):  # transformers then masks otherwise
            return None
        if model.config._attn_implementation not in ("eager", "sdpa") or model.training:
            return None
        over_input = getattr(merged, "max_new_tokens_over_input", None)
        length_given = any(kwargs.get(key) is not None for key in ("max_length", "max_new_tokens"))
        length_given = length_given or config.max_new_tokens is not None
        if merged.max_new_tokens is not None:
            max_length = 1 + merged.max_new_tokens  # the decoder start token, then the new tokens
        elif merged.max_length is not None:
            max_length = merged.max_length
        else:  # transformers' default: 20 new tokens, within the position table
            max_length = min(1 + DEFAULT_MAX_NEW_TOKENS, model.config.max_position_embeddings)
        return cls(
            num_beams=merged.num_beams,
            length_penalty=float(merged.length_penalty),
            gnmt=gnmt,
            max_length=max_length,
            max_new_tokens_over_input=None if length_given or over_input is None else int(over_input),
            min_new_tokens=merged.min_new_tokens or 0,
            decoder_start_token_id=_first_set(merged.decoder_start_token_id, model.config.decoder_start_token_id),
            eos_token_id=merged.eos_token_id,
            pad_token_id=_first_set(merged.pad_token_id, model.config.pad_token_id),
        )


def _first_set(*values):
    return next((value for value in values if value is not None), None)


@torch.no_grad()
def beam_search(
    model, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None, call: BeamSearchCall
) -> torch.LongTensor:
    """Translate `input_ids` (B, S) with the beam search described above; returns (B, T) token ids."""
    cfg = model.config
    k, alpha, device = call.num_beams, call.length_penalty, input_ids.device
    eos, pad = call.eos_token_id, call.pad_token_id
    fill = pad or eos  # after each result, as transformers fills (</s> when the padding id is 0)
    given_mask = attention_mask
    if attention_mask is None:  # as transformers makes it: padding is where the padding id is (unless it is </s>)
        has_padding = pad is not None and pad != eos
        attention_mask = (input_ids != pad).long() if has_padding else torch.ones_like(input_ids)
    batch = input_ids.shape[0]
    encoded = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)

    # The longest output (with the start token), and each sentence's: §6.1's input length + 50, within it.
    if call.max_new_tokens_over_input is not None:
        limits = source_lengths(input_ids, given_mask, cfg.pad_token_id) + call.max_new_tokens_over_input + 1
        longest = min(int(limits.max()), cfg.max_position_embeddings)
        limits = limits.clamp(max=longest)
    else:
        longest = call.max_length
        limits = torch.full((batch,), longest, dtype=torch.long, device=device)
    width = int(limits.max())

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
    encoder_rows = encoded.last_hidden_state.repeat_interleave(k, dim=0)
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
        vocab = log_probs.shape[-1]
        scores = (log_probs.view(n, k, vocab) + beam_scores[:, :, None]).view(n, k * vocab)

        # 1-2: the 2k best candidates, each a beam and a token.
        top_scores, top = torch.topk(scores, 2 * k)
        parents, tokens = top // vocab, top % vocab
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
        finished_lengths[active] = _best_of(finished_lengths[active], torch.full_like(top, generated), keep)
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


def _best_of(kept: torch.Tensor, new: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """The entries `keep` (n, k) of `kept` and `new` side by side along dim 1 (sentences' finished hypotheses,
    then the step's candidates), for a tensor of (n, *) per sentence."""
    merged = torch.cat((kept, new), dim=1)
    index = keep.view(*keep.shape, *[1] * (merged.dim() - 2)).expand(-1, -1, *merged.shape[2:])
    return merged.gather(1, index)
