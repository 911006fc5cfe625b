"""Shared source/target BPE vocabulary (paper §5.1: "byte-pair encoding ... shared source-target
vocabulary of about 37000 tokens"), trained with the `tokenizers` library.

The tokenizer is byte-level (GPT-2 style byte-to-unicode alphabet), so any text, German, Chinese or
emoji, is encoded without `<unk>`, and decoding returns the input exactly: a space is prepended to
every text by the normaliser (so a word is tokenised alike at the start and inside a sentence) and
removed again by the decoder. `</s>` is appended by the post-processor, to sources and targets.

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
    """An untrained byte-level BPE pipeline: normaliser, pre-tokeniser, decoder."""
    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Prepend(" ")])
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    # ByteLevel fuses the tokens back into text; Strip drops the one space the normaliser added.
    tokenizer.decoder = decoders.Sequence([decoders.ByteLevel(), decoders.Strip(content=" ", left=1, right=0)])
    return tokenizer


def wrap_tokenizer(tokenizer: Tokenizer, model_max_length: int = 1024) -> PreTrainedTokenizerFast:
    """Give a trained `tokenizers.Tokenizer` the `</s>` post-processor and the transformers API."""
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
