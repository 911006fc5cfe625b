"""Translate text with a trained model folder: stdin or a file in, one translation per line out.

    python -m train.translate runs/multi30k-de-en/model < input.de > output.en
    python -m train.translate runs/multi30k-de-en/model --input test.de --output hyp.en --beams 4

Sentences are sorted by length and batched by a token budget, so little time goes to padding;
outputs come back in input order.

Decoding: the model's own `generation_config.json` (for this project's models the paper's §6.1:
beam 4, length penalty 0.6, at most input length + 50 tokens), except the settings given as flags
(`--beams`, `--length-penalty`, `--max-new-tokens`) or arguments of `translate`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from train.model_folder import load_model


def decoding_settings(
    model: PreTrainedModel,
    *,
    num_beams: int | None = None,
    length_penalty: float | None = None,
    max_new_tokens: int | None = None,
) -> dict[str, Any]:
    """The decoding `translate` uses: the model's `generation_config` with the given (not `None`)
    settings on top. This is what results files record."""
    config = model.generation_config
    settings = {
        "num_beams": config.num_beams,
        "length_penalty": config.length_penalty,
        "length_penalty_form": getattr(config, "length_penalty_form", "gnmt"),
        "max_new_tokens": config.max_new_tokens,
        "max_new_tokens_over_input": getattr(config, "max_new_tokens_over_input", None),
    }
    overrides = {"num_beams": num_beams, "length_penalty": length_penalty, "max_new_tokens": max_new_tokens}
    settings.update({key: value for key, value in overrides.items() if value is not None})
    if settings["max_new_tokens"] is not None:
        settings["max_new_tokens_over_input"] = None  # a fixed limit replaces the length-relative one
    return settings


@torch.inference_mode()
def translate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    *,
    num_beams: int | None = None,
    length_penalty: float | None = None,
    max_new_tokens: int | None = None,
    batch_tokens: int = 6000,
    progress: bool = False,
) -> list[str]:
    """Translate `texts` (in order). `batch_tokens` bounds source tokens x beams per batch.

    Decoding settings left at `None` come from `model.generation_config` (`decoding_settings`)."""
    if isinstance(texts, str):
        raise TypeError("translate() takes a list of sentences, not a single string")
    overrides = {"num_beams": num_beams, "length_penalty": length_penalty, "max_new_tokens": max_new_tokens}
    overrides = {key: value for key, value in overrides.items() if value is not None}
    num_beams = decoding_settings(model, **overrides)["num_beams"]
    encoded = [
        tokenizer(text, truncation=True, max_length=model.config.max_position_embeddings).input_ids for text in texts
    ]
    order = sorted(range(len(texts)), key=lambda i: len(encoded[i]), reverse=True)
    outputs: list[str] = [""] * len(texts)
    batches, batch = [], []
    for i in order:
        longest = len(encoded[batch[0]]) if batch else len(encoded[i])
        if batch and (len(batch) + 1) * longest * num_beams > batch_tokens:
            batches.append(batch)
            batch = []
        batch.append(i)
    if batch:
        batches.append(batch)
    for batch in tqdm(batches, desc="translating", disable=not progress, unit="batch"):
        inputs = tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, return_tensors="pt")
        generated = model.generate(**inputs.to(model.device), **overrides)
        for i, text in zip(batch, tokenizer.batch_decode(generated, skip_special_tokens=True), strict=True):
            outputs[i] = text.strip()
    return outputs


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="model folder or Hub repo id")
    parser.add_argument("--input", help="text file, one sentence per line (default: stdin)")
    parser.add_argument("--output", help="where to write translations (default: stdout)")
    parser.add_argument("--beams", type=int, default=None, help="beam size (default: the model's generation config)")
    parser.add_argument("--length-penalty", type=float, default=None, help="alpha (default: the model's)")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="(default: the model's: input length + 50)")
    parser.add_argument("--batch-tokens", type=int, default=6000)
    args = parser.parse_args(argv)

    source = Path(args.input).read_text(encoding="utf-8") if args.input else sys.stdin.read()
    lines = [line.strip() for line in source.splitlines()]
    model, tokenizer = load_model(args.model)
    nonempty = [i for i, line in enumerate(lines) if line]
    translated = translate(
        model,
        tokenizer,
        [lines[i] for i in nonempty],
        num_beams=args.beams,
        length_penalty=args.length_penalty,
        max_new_tokens=args.max_new_tokens,
        batch_tokens=args.batch_tokens,
        progress=args.output is not None,
    )
    result = [""] * len(lines)
    for i, text in zip(nonempty, translated, strict=True):
        result[i] = text
    text = "\n".join(result) + ("\n" if result else "")
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
