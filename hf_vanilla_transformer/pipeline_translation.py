"""A `translation` pipeline for encoder-decoder models.

transformers v5 removed its built-in translation / text2text pipelines. This one is saved with the
model (`custom_pipelines` in `config.json` plus this file), so that

    pipeline("translation", model="path/or/repo", trust_remote_code=True)("Ein Hund läuft.")

works in a fresh environment. It is batched (`batch_size=`) and passes generation arguments
(`num_beams=`, `max_new_tokens=`, `length_penalty=`, ...) through to `model.generate`; decoding
defaults come from the model's `generation_config` (the paper's beam 4, alpha 0.6, input + 50).

An empty (or whitespace-only) input translates to `""` without running the model, as
`python -m train.translate` does for empty lines: the model would otherwise invent a sentence for a
source that holds only `</s>`. An input longer than the model's position table raises a `ValueError`
naming its length, unless `truncation=True` is passed.
"""

from __future__ import annotations

from typing import Any

from transformers import Pipeline

GENERATE_ARGS = (
    "num_beams",
    "max_new_tokens",
    "max_length",
    "min_new_tokens",
    "length_penalty",
    "early_stopping",
    "do_sample",
    "temperature",
    "top_k",
    "top_p",
    "no_repeat_ngram_size",
    "num_return_sequences",
    "repetition_penalty",
    "generation_config",
)


class TranslationPipeline(Pipeline):
    """Translate text with `model.generate`; returns `[{"translation_text": str}, ...]`."""

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = True

    def _sanitize_parameters(
        self,
        truncation: bool | None = None,
        max_source_length: int | None = None,
        clean_up_tokenization_spaces: bool | None = None,
        **kwargs: Any,
    ):
        unknown = set(kwargs) - set(GENERATE_ARGS)
        if unknown:
            raise ValueError(
                f"unknown translation pipeline arguments {sorted(unknown)}; "
                f"expected generation arguments among {GENERATE_ARGS}"
            )
        preprocess = {}
        if truncation is not None:
            preprocess["truncation"] = truncation
        if max_source_length is not None:
            preprocess["max_source_length"] = max_source_length
        postprocess = {}
        if clean_up_tokenization_spaces is not None:
            postprocess["clean_up_tokenization_spaces"] = clean_up_tokenization_spaces
        return preprocess, dict(kwargs), postprocess

    def __call__(self, inputs: str | list[str], **kwargs: Any):
        if isinstance(inputs, str):
            return [{"translation_text": ""}] if not inputs.strip() else super().__call__(inputs, **kwargs)
        if not isinstance(inputs, (list, tuple)) or not all(isinstance(x, str) for x in inputs):
            raise TypeError(f"translation pipeline expects a string or a list of strings, got {type(inputs).__name__}")
        if len(inputs) == 0:
            raise ValueError("translation pipeline got an empty list of inputs")
        results = [{"translation_text": ""} for _ in inputs]
        nonempty = [i for i, text in enumerate(inputs) if text.strip()]
        if nonempty:
            # One dict per input (not a list of one-element lists).
            translated = super().__call__([inputs[i] for i in nonempty], **kwargs)
            for i, result in zip(nonempty, translated, strict=True):
                results[i] = result[0]
        return results

    def preprocess(self, text: str, truncation: bool = False, max_source_length: int | None = None):
        if not isinstance(text, str):
            raise TypeError(f"translation pipeline expects strings, got {type(text).__name__}")
        limit = max_source_length or getattr(self.model.config, "max_position_embeddings", None)
        encoded = self.tokenizer(
            text, return_tensors="pt", truncation=truncation, max_length=limit if truncation else None
        )
        if limit is not None and encoded["input_ids"].shape[1] > limit:
            raise ValueError(
                f"translation pipeline: an input of {encoded['input_ids'].shape[1]} tokens is longer than the model's "
                f"{limit} positions; pass truncation=True to cut it"
            )
        return encoded

    def _forward(self, model_inputs: dict, **generate_kwargs: Any):
        return {"output_ids": self.model.generate(**model_inputs, **generate_kwargs)}

    def postprocess(self, model_outputs: dict, clean_up_tokenization_spaces: bool = False):
        texts = self.tokenizer.batch_decode(
            model_outputs["output_ids"],
            skip_special_tokens=True,
            clean_up_tokenization_spaces=clean_up_tokenization_spaces,
        )
        return [{"translation_text": text} for text in texts]
