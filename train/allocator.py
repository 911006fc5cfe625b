"""The C library's memory allocator for this project's training and translation processes: keep freed memory.

torch takes the memory of CPU tensors from the C library's `malloc`. glibc's `malloc` (Linux) hands a block of
more than a few megabytes back to the kernel as soon as it is freed (it maps large blocks with `mmap`, and trims
the top of its heap). A training step or a decoding step frees and re-allocates tens of megabytes of tensors
(logits, activations, gradients, the KV cache), so the kernel maps fresh zeroed pages at every step: one page
fault per 4 KiB. On the 2-core AMD EPYC of `benchmarks/results/allocator.json` that was about 50,000 faults per
training step of the small preset on 60 padded pairs with an 8,000-word vocabulary and 160,000 per beam-4
decoding of 64 sentences. Smaller tensors are reused by glibc anyway: the quick recipe's training (about 20 MB
of logits) gains nothing (`benchmarks/results/allocator-quick-recipe.json`).

`keep_freed_memory()` asks glibc (`mallopt`) to serve every allocation from its heap (`M_MMAP_MAX` 0) and to
keep freed memory for reuse (`M_TRIM_THRESHOLD` 2 GiB), what the environment variables `MALLOC_MMAP_MAX_=0
MALLOC_TRIM_THRESHOLD_=...` do at start-up. The same arithmetic runs, without the page faults (the speed-up:
`benchmarks/bench_allocator.py`). The cost: the process keeps the most memory it has used until it exits,
instead of giving some back between steps.

The CLIs that train or translate call it (`train.train.train`, `train.translate`, `train.evaluate_model`,
`train.tune_decoding`); importing this package or the model package changes nothing. It does nothing where the
choice is not ours or not possible:

- the C library is not glibc (macOS, Windows, musl);
- the user already chose: an allocator preloaded (`LD_PRELOAD`, e.g. jemalloc or tcmalloc), glibc malloc
  settings in the environment (`MALLOC_*`, `GLIBC_TUNABLES` with `glibc.malloc`);
- `HVT_KEEP_FREED_MEMORY=0` in the environment.

It returns what it did, a short description that results files record (`memory_allocator`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from collections.abc import Mapping

logger = logging.getLogger(__name__)

OPT_OUT_VARIABLE = "HVT_KEEP_FREED_MEMORY"
# mallopt parameters of glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
KEEP_UP_TO_BYTES = 2**31 - 1  # trim threshold (an int): freed memory is kept unless 2 GiB lie free at the heap's top

_state: dict[str, str] = {}


def _glibc() -> ctypes.CDLL | None:
    """The process's C library if it is glibc (it has `gnu_get_libc_version` and `mallopt`), else None."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
        return libc
    except (OSError, AttributeError):
        return None


def _user_choice(environ: Mapping[str, str]) -> str | None:
    """How the user already chose the allocator's behaviour, or None."""
    if environ.get(OPT_OUT_VARIABLE, "").strip() in ("0", "false", "False", "no"):
        return f"{OPT_OUT_VARIABLE}=0"
    preload = environ.get("LD_PRELOAD", "")
    if preload.strip():
        return f"LD_PRELOAD={preload}"
    settings = sorted(k for k in environ if k.startswith("MALLOC_"))
    if settings:
        return ", ".join(settings)
    if "glibc.malloc" in environ.get("GLIBC_TUNABLES", ""):
        return "GLIBC_TUNABLES"
    return None


def keep_freed_memory(environ: Mapping[str, str] | None = None) -> str:
    """Make glibc keep freed memory for reuse in this process (see the module docstring); once per process.
    Returns a description of the allocator's state."""
    if "description" in _state:
        return _state["description"]
    choice = _user_choice(os.environ if environ is None else environ)
    libc = _glibc() if choice is None else None
    if choice is not None:
        description = f"as set by the user ({choice})"
    elif libc is None:
        description = "the C library's default (not glibc)"
    elif libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, KEEP_UP_TO_BYTES) == 1:
        description = "glibc, freed memory kept for reuse (mallopt M_MMAP_MAX=0, M_TRIM_THRESHOLD=2 GiB)"
    else:
        description = "glibc default (mallopt refused the settings)"
    logger.info("memory allocator: %s", description)
    _state["description"] = description
    return description


def allocator_state() -> str:
    """What `keep_freed_memory` did in this process, or the default when it was not called."""
    return _state.get("description", "the C library's default")
