"""Which `generate()` calls this package decodes in its own loops, and what those loops share.

transformers' generation loops keep every sentence of a batch in the batch until the last one is done. This
package's loops, greedy search (`greedy_search.py`) and beam search (`beam_search.py`), give the same tokens
(tested token for token against transformers' loops) but let each sentence leave once its result is final.
They cover the calls of §6.1's kind only: `DecodingCall.of` says which, and reads their settings. Every other
call (sampling, scores in the output, logits processors, ...) runs in transformers' loops.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from transformers import GenerationConfig

DEFAULT_MAX_NEW_TOKENS = 20
"""transformers' output length when a call sets none (and the model's generation config has no per-sentence one)."""


def source_lengths(source: torch.Tensor, attention_mask: torch.Tensor | None, pad_token_id: int | None) -> torch.Tensor:
    """Each sentence's length in tokens, for §6.1's limit of input length + 50: the attention mask's count, else
    the tokens that are not padding."""
    if attention_mask is not None:
        return attention_mask.sum(dim=1)
    if pad_token_id is not None:
        return (source != pad_token_id).sum(dim=1)
    return torch.full((source.shape[0],), source.shape[1], device=source.device)


def padding_mask(input_ids: torch.Tensor, pad_token_id: int | None, eos_token_id) -> torch.Tensor | None:
    """The attention mask of a batch given without one: 0 where the padding id is, if it is there and is not
    `</s>`; else `None` (nothing to mask). transformers 4 inferred this mask for every model; transformers 5 does
    it for decoder-only models only, so an encoder-decoder model would attend to the padding of a batch."""
    if (
        pad_token_id is None
        or eos_token_id == pad_token_id
        or (isinstance(eos_token_id, list) and pad_token_id in eos_token_id)
    ):
        return None
    padding = input_ids == pad_token_id
    return (~padding).long() if bool(padding.any()) else None


@dataclass(frozen=True)
class DecodingCall:
    """The settings of a `generate()` call that this package's loops decode exactly as transformers would:
    greedy search for `num_beams == 1`, beam search above."""

    num_beams: int
    length_penalty: float
    gnmt: bool
    max_length: int  # tokens including the decoder start token, for the whole batch
    max_new_tokens_over_input: int | None  # §6.1's per-sentence limit, when no length was given
    min_new_tokens: int
    decoder_start_token_id: int
    eos_token_id: int
    pad_token_id: int | None

    # GenerationConfig fields the loops implement; any other non-default value means transformers' loop.
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

    @property
    def greedy(self) -> bool:
        return self.num_beams == 1

    @classmethod
    def of(cls, model, config: GenerationConfig, kwargs: dict, gnmt: bool) -> DecodingCall | None:
        """The settings of `model.generate(generation_config=config, **kwargs)` if this package's loops cover
        the call, else `None` (transformers' loops then decode it).

        Covered: greedy or beam search over `input_ids` (+ `attention_mask`), one result per sentence, with no
        option but the length penalty, the length limits and the special tokens, by a model in eval mode with
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
        num_beams = 1 if merged.num_beams is None else merged.num_beams
        if changed - cls.SETTINGS or not isinstance(num_beams, int) or isinstance(num_beams, bool) or num_beams < 1:
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
            num_beams=num_beams,
            length_penalty=float(merged.length_penalty),
            gnmt=gnmt,
            max_length=max_length,
            max_new_tokens_over_input=None if length_given or over_input is None else int(over_input),
            min_new_tokens=merged.min_new_tokens or 0,
            decoder_start_token_id=_first_set(merged.decoder_start_token_id, model.config.decoder_start_token_id),
            eos_token_id=merged.eos_token_id,
            pad_token_id=_first_set(merged.pad_token_id, model.config.pad_token_id),
        )

    def length_limits(self, model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """Each sentence's longest output in tokens, the decoder start token included: §6.1's input length + 50
        within the position table (as transformers clamps the batch's), or the call's one length for all."""
        if self.max_new_tokens_over_input is None:
            return torch.full((input_ids.shape[0],), self.max_length, dtype=torch.long, device=input_ids.device)
        cfg = model.config
        limits = source_lengths(input_ids, attention_mask, cfg.pad_token_id) + self.max_new_tokens_over_input + 1
        return limits.clamp(max=cfg.max_position_embeddings)

    def encode(self, model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None):
        """What both loops start from: each sentence's length limit (`length_limits`), the attention mask (all
        ones when none is given: `generate()` passes the mask of a padded batch) and the encoder's output."""
        limits = self.length_limits(model, input_ids, attention_mask)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        encoded = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
        return limits, attention_mask, encoded.last_hidden_state


def _first_set(*values):
    return next((value for value in values if value is not None), None)
