"""Shared source/target BPE vocabulary (paper §5.1: "byte-pair encoding ... shared source-target
vocabulary of about 37000 tokens"), trained with the `tokenizers` library.

The tokenizer is byte-level, like GPT-2's: text is split with GPT-2's pattern, each piece is
turned into its UTF-8 bytes (spelled with GPT-2's byte-to-unicode alphabet), and BPE merges bytes
into tokens. Every one of the 256 bytes is in the vocabulary, so any text, German, Chinese or
emoji, is encoded without `<unk>`. What is exact:

- `decode(encode(text), skip_special_tokens=True) == text` for every Python string that can be
  written as UTF-8 (any string without lone surrogates): no Unicode normalisation (`"Cafe\u0301"`
  stays five code points, U+212B ANGSTROM SIGN stays U+212B), no lost or added spaces, tabs,
  newlines, NUL, BOM, zero-width joiners or line separators. The only transformation is a space
  prepended to every non-empty text (so a word is tokenised alike at the start and inside a
  sentence), which the decoder's `Strip` takes off again.
- User text stays text: `<pad>`, `<s>`, `</s>` and `<unk>` written in the input are encoded as
  their characters, never as the special ids (`split_special_tokens=True`, stored in
  `tokenizer_config.json` so `AutoTokenizer` restores it). The only special id in an encoding is
  the `</s>` the post-processor appends, to sources and targets alike. Pass
  `split_special_tokens=False` to a call to have markup parsed as special tokens.

Not covered: a truncated encoding (`truncation=True`) loses the text cut off, and a string with a
lone surrogate is refused by `tokenizers` (a `TypeError`). As nothing is normalised, canonically
equivalent spellings (é as U+00E9 or as e + U+0301) get different tokens; normalise training and
input text alike if your data mixes them.

Tokenizers trained by earlier versions of this project have an NFC normaliser in their
`tokenizer.json` and parse markup as special tokens; loaded, they behave as they were saved.

The result is a plain `PreTrainedTokenizerFast` (`tokenizer.json`), so `AutoTokenizer` loads it
anywhere without custom code.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK]  # ids 0, 1, 2, 3: the config's defaults


def _lines(files: Iterable[str | os.PathLike]) -> Iterator[str]:
    for file in files:
        path = Path(file)
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer training file not found: {path}")
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                line = line.strip()
                if line:
                    yield line


def build_bpe_tokenizer() -> Tokenizer:
    """An untrained byte-level BPE pipeline: normaliser, pre-tokeniser, decoder.

    No Unicode normalisation (it would make round trips inexact): the normaliser only prepends
    one space to non-empty text, and the decoder strips exactly one leading space.
    """
    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    tokenizer.normalizer = normalizers.Prepend(" ")
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    # ByteLevel fuses the tokens back into text; Strip drops the one space the normaliser added.
    tokenizer.decoder = decoders.Sequence([decoders.ByteLevel(), decoders.Strip(content=" ", left=1, right=0)])
    return tokenizer


def wrap_tokenizer(tokenizer: Tokenizer, model_max_length: int = 1024) -> PreTrainedTokenizerFast:
    """Give a trained `tokenizers.Tokenizer` the `</s>` post-processor and the transformers API.

    `split_special_tokens=True`: special-token markup in user text is encoded as text (it is saved
    in `tokenizer_config.json`, so a tokenizer loaded with `AutoTokenizer` does the same).
    """
    eos_id = tokenizer.token_to_id(EOS)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}", special_tokens=[(EOS, eos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
        split_special_tokens=True,
        padding_side="right",
    )


def train_tokenizer(
    files: Iterable[str | os.PathLike] | None = None,
    vocab_size: int = 8000,
    *,
    texts: Iterable[str] | None = None,
    min_frequency: int = 2,
    model_max_length: int = 1024,
    show_progress: bool = False,
) -> PreTrainedTokenizerFast:
    """Train a shared byte-level BPE vocabulary on source and target text together (§5.1).

    Args:
        files: plain-text files, one sentence per line (e.g. `["train.de", "train.en"]`).
        vocab_size: total vocabulary size including the 4 special tokens and the 256 byte symbols.
        texts: sentences to train on instead of (or as well as) `files`.
        min_frequency: minimum pair count for a merge.
        model_max_length: the wrapper's `model_max_length` (match `max_position_embeddings`).

    Returns a `PreTrainedTokenizerFast` with `<pad>`=0, `<s>`=1, `</s>`=2, `<unk>`=3.
    """
    if files is None and texts is None:
        raise ValueError("train_tokenizer needs `files` or `texts`")
    files = [files] if isinstance(files, (str, os.PathLike)) else list(files or [])
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    minimum = len(SPECIAL_TOKENS) + len(alphabet)
    if vocab_size < minimum:
        raise ValueError(f"vocab_size must be at least {minimum} (4 special tokens + 256 bytes), got {vocab_size}")

    def corpus() -> Iterator[str]:
        yield from _lines(files)
        for text in texts or ():
            if text.strip():
                yield text.strip()

    first = next(iter(corpus()), None)
    if first is None:
        raise ValueError(f"no text to train the tokenizer on (files={[str(f) for f in files]})")
    tokenizer = build_bpe_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=alphabet,
        show_progress=show_progress,
    )
    tokenizer.train_from_iterator(corpus(), trainer=trainer)
    return wrap_tokenizer(tokenizer, model_max_length)
