"""TEST HELPER (not part of the library): a tiny byte-level BPE tokenizer for fast tests.

It mimics the project's real tokenizer (`hf_vanilla_transformer.train_tokenizer`) in the parts
the training code relies on: special ids `<pad>`=0, `<s>`=1, `</s>`=2, `<unk>`=3, and a
post-processor that appends `</s>` to every sequence ("$A </s>").
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]

SAMPLE_LINES = [
    "A man is riding a bicycle down the street.",
    "Ein Mann fährt mit einem Fahrrad die Straße entlang.",
    "Two dogs are playing in the snow.",
    "Zwei Hunde spielen im Schnee.",
    "A little girl climbs into a wooden playhouse.",
    "Ein kleines Mädchen klettert in ein Spielhaus aus Holz.",
]


def tiny_tokenizer(lines: Iterable[str] = SAMPLE_LINES, vocab_size: int = 300) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on `lines` and wrap it as a transformers fast tokenizer."""
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(list(lines), trainer=trainer)
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 2)])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
