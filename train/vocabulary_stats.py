"""How a shared byte-level BPE vocabulary of a given size segments a corpus (to choose `vocab_size`, §5.1).

    python -m train.vocabulary_stats --setting tatoeba-zh-en --vocab-sizes 4000,8000,12000,16000 \\
        --output results/tatoeba-vocabulary.json

For each size it trains the tokenizer a run would train (on the training split's source and target
text together) and measures on the validation split, per language: tokens per sentence, characters
per token, and the share of tokens that are *partial characters*. A byte-level BPE starts from the
256 bytes, and a CJK character is 3 UTF-8 bytes, so a character that no merge covers is split into
byte tokens, none of which decodes to a character on its own (it decodes to U+FFFD); that share
falls as the vocabulary grows. It also shows the segmentation of a few validation sentences.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import hf_vanilla_transformer as hvt
from train.config import TrainConfig
from train.data import load_corpus
from train.evaluate import write_results
from train.precision import machine_description

REPLACEMENT = "\ufffd"


def segmentation_stats(tokenizer, texts: Sequence[str]) -> dict[str, float]:
    """Tokens per sentence, characters per token and the share of partial-character tokens of `texts`
    (without `</s>`)."""
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    pieces = [tokenizer.decode([token]) for sentence in ids for token in sentence]
    tokens = len(pieces)
    if tokens == 0:
        raise ValueError("no tokens: the texts are empty")
    return {
        "tokens_per_sentence": tokens / len(ids),
        "characters_per_token": sum(len(text) for text in texts) / tokens,
        "partial_character_tokens": sum(REPLACEMENT in piece for piece in pieces) / tokens,
    }


def vocabulary_stats(cfg: TrainConfig, vocab_sizes: Sequence[int], examples: int = 3) -> dict[str, Any]:
    """`segmentation_stats` of `cfg`'s validation split under a tokenizer of each of `vocab_sizes`,
    trained as `train.train.build_tokenizer` does, plus the segmentation of the first `examples` pairs."""
    corpus = load_corpus(cfg.dataset, cfg.src_lang, cfg.tgt_lang, data_dir=cfg.data_dir)
    train, validation = corpus[cfg.train_split], corpus[cfg.eval_split]
    rows = []
    for size in vocab_sizes:
        tokenizer = hvt.train_tokenizer(texts=list(train["src"]) + list(train["tgt"]), vocab_size=size)
        row: dict[str, Any] = {"vocab_size": size}
        for side, lang in (("src", cfg.src_lang), ("tgt", cfg.tgt_lang)):
            row[lang] = segmentation_stats(tokenizer, validation[side])
            row[f"{lang}_examples"] = [
                [tokenizer.decode([token]) for token in tokenizer(text, add_special_tokens=False)["input_ids"]]
                for text in validation[side][:examples]
            ]
        rows.append(row)
    return {
        "dataset": cfg.dataset,
        "train_split": cfg.train_split,
        "measured_on": cfg.eval_split,
        "languages": [cfg.src_lang, cfg.tgt_lang],
        "distinct_training_characters": {
            lang: len({char for text in train[side] for char in text})
            for side, lang in (("src", cfg.src_lang), ("tgt", cfg.tgt_lang))
        },
        "sizes": rows,
        "machine": machine_description(),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from train.recipe import SETTINGS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="tatoeba-zh-en")
    parser.add_argument("--vocab-sizes", default="4000,8000,12000,16000", help="comma-separated sizes")
    parser.add_argument("--output", default=None, help="write the results here as JSON")
    parser.add_argument("overrides", nargs="*", help="key=value TrainConfig overrides")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.vocab_sizes.split(",")]
    stats = vocabulary_stats(TrainConfig.load(SETTINGS[args.setting], args.overrides), sizes)
    stats["command"] = f"python -m train.vocabulary_stats --setting {args.setting} --vocab-sizes {args.vocab_sizes}"
    for row in stats["sizes"]:
        parts = [
            f"{lang}: {row[lang]['tokens_per_sentence']:.2f} tokens/sentence, "
            f"{100 * row[lang]['partial_character_tokens']:.1f}% partial characters"
            for lang in stats["languages"]
        ]
        print(f"vocab {row['vocab_size']:>6}  " + "; ".join(parts))
    largest = stats["sizes"][-1]
    for lang in stats["languages"]:
        print(f"{lang} example, vocabulary {largest['vocab_size']}: " + " | ".join(largest[f"{lang}_examples"][0]))
    if args.output:
        write_results(args.output, stats)
        print(f"written: {args.output}")
    return stats


if __name__ == "__main__":
    main()
