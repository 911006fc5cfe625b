"""Text with one sentence per line: how every tool here reads and writes it.

- Lines end at `\\n` only; a `\\r` before it (Windows line ends) is dropped. `str.splitlines()` is
  not used: it also breaks at U+2028, U+2029, U+0085, form feed and other characters that can
  occur inside a sentence, which would make one input line into several outputs.
- A final line ending does not start another (empty) line.
- Text must be UTF-8; where it is not, the error names the file (or `<stdin>`), the line and the
  byte's column.
- Files are written whole or not at all: into a temporary file beside the target, then renamed
  over it, so a full disk or a crash never leaves a truncated file in place of a previous one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path


class NotUTF8Error(ValueError):
    """Input text that is not valid UTF-8; the message names the file, line and column."""


def split_lines(text: str) -> list[str]:
    """The lines of `text`, split at `\\n` only, without their line ends (see the module docstring)."""
    text = text.removesuffix("\n")
    return [line.removesuffix("\r") for line in text.split("\n")] if text else []


def decode_utf8(raw: bytes, name: str) -> str:
    """`raw` decoded as UTF-8 (a leading byte-order mark is dropped); `NotUTF8Error` names `name`,
    the line and the column (in bytes, from 1) of the first invalid byte."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line_start = raw.rfind(b"\n", 0, error.start) + 1
        line = raw.count(b"\n", 0, error.start) + 1
        raise NotUTF8Error(
            f"{name}:{line}: not valid UTF-8 (byte 0x{raw[error.start]:02x} at column {error.start - line_start + 1}: "
            f"{error.reason}); convert the file to UTF-8, e.g. with iconv"
        ) from None


def read_lines(path: str | Path) -> list[str]:
    """The lines of a UTF-8 text file (`split_lines`, `decode_utf8`)."""
    return split_lines(decode_utf8(Path(path).read_bytes(), str(path)))


def write_lines_atomic(path: str | Path, lines: Sequence[str]) -> Path:
    """Write `lines`, each ended by `\\n`, as UTF-8 to `path`, whole or not at all. A line holding
    `\\n` or `\\r` is refused: it would break the one-line-per-sentence alignment."""
    broken = next((i for i, line in enumerate(lines) if "\n" in line or "\r" in line), None)
    if broken is not None:
        raise ValueError(f"line {broken + 1} to write to {path} contains a line break")
    return write_text_atomic(path, "".join(line + "\n" for line in lines))


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write `text` as UTF-8 to `path` through a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(temporary, path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_umask())
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    """The process's file-creation mask (mkstemp creates files readable by their owner only)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
