"""Decoding as in §6.1: beam search with beam size 4, length penalty alpha = 0.6, and a maximum
output length of input length + 50, on top of transformers' `generate()`.

- `paper_generation_config` is the one home of these defaults: they are saved as the model's
  `generation_config.json`, and every tool reads them from there (a model saved with other settings
  is decoded with its own).
- `SourceLengthCriteria` stops each sentence at *its own* input length + 50 tokens, so a sentence
  decodes the same alone and in a batch (transformers' `max_length` is one number per batch).
- `PaperGenerationMixin` ranks finished beam hypotheses with the GNMT length penalty the paper uses
  (`length_penalty_form="gnmt"`, the default) or transformers' own (`"hf"`); see `compat.py` for
  why this needs two private methods of `GenerationMixin` and how that is guarded. It decodes beam search
  with the cache of `beam_cache.py`, and with the weights packed for oneDNN (`onednn.py`).
- Greedy and beam search with §6.1's options run in this package's own loops (`greedy_search.py`,
  `beam_search.py`; which calls: `decoding_call.py`): the same translations as transformers' loops, but each
  sentence leaves the batch once its translation is final. Every other call (sampling, scores in the output,
  logits processors, ...) runs in transformers' loops.

Decoding choices live in `generation_config`, not in the model config: pass them to `generate()`
(`num_beams=`, `length_penalty=`, `length_penalty_form=`, `max_new_tokens=`) or save your own
`GenerationConfig` with the model.
"""

from __future__ import annotations

import logging

import torch
from transformers import GenerationConfig, GenerationMixin, StoppingCriteria, StoppingCriteriaList
from transformers.cache_utils import DynamicCache

from .beam_cache import BeamSearchCache, beam_self_attention_cache
from .beam_search import beam_search, gnmt_rescale
from .compat import CACHE_NAME, check_beam_search_hooks
from .decoding_call import DecodingCall, padding_mask, source_lengths
from .greedy_search import greedy_search
from .onednn import packed_weights

logger = logging.getLogger(__name__)

LENGTH_PENALTY_FORMS = ("gnmt", "hf")
MAX_NEW_TOKENS_OVER_INPUT = 50  # §6.1: "maximum output length to input length + 50"


def paper_generation_config(config) -> GenerationConfig:
    """Decoding defaults of §6.1: beam size 4, GNMT length penalty alpha = 0.6, output <= input + 50."""
    return GenerationConfig(
        num_beams=4,
        length_penalty=0.6,
        length_penalty_form="gnmt",
        max_new_tokens_over_input=MAX_NEW_TOKENS_OVER_INPUT,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        decoder_start_token_id=config.decoder_start_token_id,
    )


class SourceLengthCriteria(StoppingCriteria):
    """Stop row i once it holds `source_lengths[i] + offset` new tokens (after the decoder start token).

    `source_lengths` has one entry per sentence; rows of beam search (batch * beams) map to
    sentence `row // beams`. Rows stopped here end like rows that reach `max_length`.
    """

    def __init__(self, source_lengths: torch.Tensor, offset: int, start_length: int = 1):
        self.limits = source_lengths.long() + offset + start_length

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        rows_per_sentence = input_ids.shape[0] // self.limits.shape[0]
        limits = self.limits.to(input_ids.device).repeat_interleave(rows_per_sentence)
        return input_ids.shape[1] >= limits


class PaperGenerationMixin(GenerationMixin):
    """`GenerationMixin` with §6.1's defaults, per-sentence length limits and the GNMT beam score."""

    use_own_decoding_loops = True
    """Decode the calls `decoding_call.DecodingCall.of` covers with `greedy_search` / `beam_search` (the same
    result; finished sentences leave the batch); `False`: always transformers' loops (for comparison)."""

    def generate(self, inputs: torch.Tensor | None = None, generation_config=None, **kwargs):
        """`GenerationMixin.generate` with the paper's decoding (§6.1).

        Unless `max_length` / `max_new_tokens` is given (in the call or the generation config), each
        sentence gets at most its own length + 50 new tokens (and the whole output at most
        `max_position_embeddings` positions). `length_penalty_form="gnmt"|"hf"` chooses how finished
        beams are ranked (default: the generation config's, else `"gnmt"`). A padded batch given without its
        `attention_mask` gets the mask of its padding id (`decoding_call.padding_mask`), as transformers 4 made it.
        """
        config = generation_config or self.generation_config
        form = kwargs.pop("length_penalty_form", None) or getattr(config, "length_penalty_form", None)
        form = form or getattr(self.config, "length_penalty_form", None) or "gnmt"  # older saved models
        if form not in LENGTH_PENALTY_FORMS:
            raise ValueError(f"length_penalty_form must be one of {LENGTH_PENALTY_FORMS}, got {form!r}")
        num_beams = kwargs.get("num_beams", config.num_beams)
        if num_beams is not None and (not isinstance(num_beams, int) or isinstance(num_beams, bool) or num_beams < 1):
            raise ValueError(f"num_beams must be a positive integer, got {num_beams!r}")

        source = inputs if inputs is not None else kwargs.get("input_ids")
        token_ids = torch.is_tensor(source) and source.dim() == 2  # (batch, length): what the own loops decode
        if token_ids and kwargs.get("attention_mask") is None:
            pad = kwargs.get("pad_token_id", config.pad_token_id)
            mask = padding_mask(source, pad, kwargs.get("eos_token_id", config.eos_token_id))
            if mask is not None:  # as transformers 4 did (5 passes none to encoder-decoder models)
                kwargs["attention_mask"] = mask
        if self.use_own_decoding_loops and token_ids and source.shape[0] > 0:
            call = DecodingCall.of(self, config, {k: v for k, v in kwargs.items() if k != "input_ids"}, form == "gnmt")
            if call is not None:  # greedy or beam search with §6.1's options: this package's loops
                search = greedy_search if call.greedy else beam_search
                with packed_weights():
                    return search(self, source, kwargs.get("attention_mask"), call)
        if form == "gnmt" and (num_beams or 1) > 1:
            check_beam_search_hooks()

        length_given = any(kwargs.get(k) is not None for k in ("max_length", "max_new_tokens"))
        length_given = length_given or config.max_new_tokens is not None
        offset = getattr(config, "max_new_tokens_over_input", None)
        if not length_given and offset is not None and torch.is_tensor(source) and source.dim() == 2:
            if source.shape[0] == 0:
                raise ValueError("generate() got an empty batch (input_ids has 0 rows)")
            lengths = source_lengths(source, kwargs.get("attention_mask"), self.config.pad_token_id)
            criteria = StoppingCriteriaList(kwargs.pop("stopping_criteria", None) or [])
            criteria.append(SourceLengthCriteria(lengths, int(offset)))
            kwargs["stopping_criteria"] = criteria
            # The longest sentence's limit, as max_length (which counts the decoder start token) so that
            # transformers does not warn about a max_length left in generation_config.json; clamped to the
            # position table, as transformers clamps its own default length.
            longest = 1 + int(lengths.max()) + int(offset)
            kwargs["max_length"] = min(longest, self.config.max_position_embeddings)
        use_cache = kwargs.get("use_cache", config.use_cache)
        no_cache_given = kwargs.get("cache") is None and kwargs.get("past_key_values") is None
        if (num_beams or 1) > 1 and use_cache is not False and no_cache_given:
            decoder_config = self.config.get_text_config(decoder=True)
            # One cross-attention K/V per sentence where the mask is a plain tensor (eager, SDPA).
            beams_per_source = num_beams if self.config._attn_implementation in ("eager", "sdpa") else 1
            kwargs[CACHE_NAME] = BeamSearchCache(
                beam_self_attention_cache(decoder_config), DynamicCache(config=decoder_config), beams_per_source
            )
        self._length_penalty_form = form
        with packed_weights():  # the weights are fixed for the call: oneDNN may pack them once (onednn.py)
            return super().generate(inputs, generation_config=generation_config, **kwargs)

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """`PreTrainedModel.from_pretrained`; a missing or unreadable `generation_config.json` falls back
        to the paper's decoding (§6.1) with a warning, instead of transformers' greedy 20 tokens."""
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded  # output_loading_info=True
        if not hasattr(model.generation_config, "max_new_tokens_over_input") and (
            getattr(model.generation_config, "_from_model_config", False)
        ):
            logger.warning(
                "%s: no readable generation_config.json; decoding with the paper's defaults (beam 4, "
                "GNMT length penalty 0.6, at most input length + 50 tokens)",
                args[0] if args else kwargs.get("pretrained_model_name_or_path"),
            )
            model.generation_config = paper_generation_config(model.config)
        return loaded

    def _uses_gnmt_penalty(self) -> bool:
        return getattr(self, "_length_penalty_form", "gnmt") == "gnmt"

    # The two methods below are transformers' private beam-ranking steps (see compat.check_beam_search_hooks).
    def _update_finished_beams(self, *, topk_log_probs, cur_len, decoder_prompt_len, length_penalty, **kwargs):
        # transformers divides by `len ** alpha`; pre-multiplying by len**alpha / lp_gnmt(len) makes it GNMT's.
        if self._uses_gnmt_penalty():
            topk_log_probs = topk_log_probs * gnmt_rescale(cur_len + 1 - decoder_prompt_len, length_penalty)
        return super()._update_finished_beams(
            topk_log_probs=topk_log_probs,
            cur_len=cur_len,
            decoder_prompt_len=decoder_prompt_len,
            length_penalty=length_penalty,
            **kwargs,
        )

    def _check_early_stop_heuristic(
        self, *, running_beam_scores, cur_len, max_length, decoder_prompt_len, early_stopping, length_penalty, **kwargs
    ):
        if self._uses_gnmt_penalty():
            # The best score a running beam could still reach, as transformers estimates it, under GNMT.
            if early_stopping == "never" and length_penalty > 0.0:
                length = max_length - decoder_prompt_len
            else:
                length = cur_len - decoder_prompt_len
            running_beam_scores = running_beam_scores * gnmt_rescale(length, length_penalty)
        return super()._check_early_stop_heuristic(
            running_beam_scores=running_beam_scores,
            cur_len=cur_len,
            max_length=max_length,
            decoder_prompt_len=decoder_prompt_len,
            early_stopping=early_stopping,
            length_penalty=length_penalty,
            **kwargs,
        )
