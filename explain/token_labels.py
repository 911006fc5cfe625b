"""Readable labels for BPE pieces, for axes of plots.

The project's tokenizer is byte-level BPE (like GPT-2's): a token is a string of UTF-8 *bytes*, each
spelled with one printable character of GPT-2's byte-to-character table, so the space before a word
is `Ġ` and the German `ä` (bytes C3 A4) is `Ã¤`: `ĠfÃ¤hrt` is the piece " fährt". A label shows the
text of the piece, with the SentencePiece word-start mark `▁` for a space (invisible on an axis),
so `ĠfÃ¤hrt` becomes `▁fährt` and a piece continuing a word (`l` in `▁wei l`) has no mark. Special
tokens (`<s>`, `</s>`) are shown as they are; a piece that holds only part of a multi-byte
character shows its bytes (`\\xc3`), and other non-printable characters are escaped.

Tokens of a tokenizer that is not byte-level (SentencePiece pieces already use `▁`) are kept as they are.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase

WORD_START = "\u2581"  # ▁, SentencePiece's mark for the space before a word


@functools.cache
def byte_to_char() -> dict[int, str]:
    """GPT-2's table (Radford et al. 2019, `bytes_to_unicode` in its `encoder.py`): byte -> the printable
    character byte-level BPE spells it with. Printable Latin-1 bytes stand for themselves; the 68 others
    (control characters, space, ...) are mapped in order to U+0100 onwards (space, byte 32, is `Ġ`)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {byte: chr(byte) for byte in printable}
    for offset, byte in enumerate(b for b in range(256) if b not in table):
        table[byte] = chr(256 + offset)
    return table


@functools.cache
def char_to_byte() -> dict[str, int]:
    return {char: byte for byte, char in byte_to_char().items()}


def _component_types(component: dict | list | None) -> set[str]:
    """Every `type` named in a serialised tokenizer component, including those inside a `Sequence`."""
    if isinstance(component, list):
        return set().union(*(_component_types(item) for item in component))
    if not isinstance(component, dict):
        return set()
    found = {component["type"]} if isinstance(component.get("type"), str) else set()
    for value in component.values():
        if isinstance(value, (dict, list)):
            found |= _component_types(value)
    return found


def is_byte_level(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the tokenizer's pre-tokenizer or decoder is `ByteLevel` (read from its `tokenizer.json` form)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return False
    serialised = json.loads(backend.to_str())
    return "ByteLevel" in _component_types(serialised.get("pre_tokenizer")) | _component_types(
        serialised.get("decoder")
    )


def readable_piece(token: str, byte_level: bool = True) -> str:
    """One BPE piece as text: `ĠfÃ¤hrt` -> `▁fährt` (see the module docstring)."""
    if byte_level and token and all(char in char_to_byte() for char in token):
        token = bytes(char_to_byte()[char] for char in token).decode("utf-8", errors="backslashreplace")
    token = token.replace(" ", WORD_START)
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in token)


def readable_tokens(tokenizer: PreTrainedTokenizerBase, ids: Sequence[int]) -> list[str]:
    """Labels for the token ids `ids`: special tokens as they are, BPE pieces made readable."""
    byte_level = is_byte_level(tokenizer)
    special = set(tokenizer.all_special_tokens)
    tokens = tokenizer.convert_ids_to_tokens([int(i) for i in ids])
    return [token if token in special else readable_piece(token, byte_level) for token in tokens]
