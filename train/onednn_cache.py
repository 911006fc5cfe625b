"""oneDNN's primitive cache for this project's training and translation processes: room for every batch shape.

Under bf16 autocast torch multiplies matrices with oneDNN (on CPUs with `avx512_bf16` or AMX), and so does the
model's fp32 decoding (`hf_vanilla_transformer/onednn.py`). oneDNN compiles a kernel ("primitive") for every
matrix shape it meets and keeps the last 1,024 in a cache. Token-budget batches (§5.1, `train.batching`) come in
many shapes: the quick recipe's 529 batches per epoch of Multi30k have 275 different (sentences, source length,
target length) shapes, the long runs' 270 batches 197, and a training step of the small preset needs about 20
primitives per shape (the projections, the FFN and the pre-softmax layer, forward and backward, and the
attention products). Several thousand primitives do not fit in 1,024, and the batches come shuffled, so the
cache forgets a shape before it returns: nearly every step compiled its kernels again, about 50-90 ms of a
0.2-0.3 s step on a 2-core Intel Xeon with AMX (`benchmarks/bench_onednn_cache.py`, results in
`benchmarks/README.md`).

`make_room_for_batch_shapes()` raises the cache's capacity to `CAPACITY` primitives through oneDNN's own setting,
the environment variable `ONEDNN_PRIMITIVE_CACHE_CAPACITY`. Then every shape is compiled once per process, in the
first epoch, and reused after; the arithmetic is the same. The cost is the memory of the compiled kernels. oneDNN
reads the variable when it creates its first primitive, so the CLIs that train or translate call this first
(`train.train.train`, `train.translate`, `train.evaluate_model`, `train.tune_decoding`), next to
`train.allocator.keep_freed_memory`; in a process that has already used oneDNN it changes nothing (oneDNN keeps
its capacity, and the run is as fast as before this module). Importing this package or the model package changes
nothing. It leaves the capacity alone where the user chose one (`ONEDNN_PRIMITIVE_CACHE_CAPACITY`, or its older
name `DNNL_PRIMITIVE_CACHE_CAPACITY`, in the environment).

It returns what it did, a short description that results files record (`onednn_primitive_cache`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import MutableMapping

logger = logging.getLogger(__name__)

CAPACITY_VARIABLE = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"
OLD_CAPACITY_VARIABLE = "DNNL_PRIMITIVE_CACHE_CAPACITY"  # oneDNN's name for it before v2.x, still read
CAPACITY = 16384
"""Primitives kept: the quick recipe's 275 shapes x about 20 primitives, with room to spare."""
ONEDNN_DEFAULT_CAPACITY = 1024

_state: dict[str, str] = {}


def make_room_for_batch_shapes(environ: MutableMapping[str, str] | None = None) -> str:
    """Let oneDNN keep `CAPACITY` compiled primitives in this process (see the module docstring), unless the user
    set a capacity; once per process. Returns a description of the cache's setting."""
    if "description" in _state:
        return _state["description"]
    environ = os.environ if environ is None else environ
    chosen = [name for name in (CAPACITY_VARIABLE, OLD_CAPACITY_VARIABLE) if environ.get(name, "").strip()]
    if chosen:
        description = f"as set by the user ({chosen[0]}={environ[chosen[0]]})"
    else:
        environ[CAPACITY_VARIABLE] = str(CAPACITY)
        description = f"{CAPACITY} primitives ({CAPACITY_VARIABLE}; oneDNN's default is {ONEDNN_DEFAULT_CAPACITY})"
    logger.info("oneDNN primitive cache: %s", description)
    _state["description"] = description
    return description


def primitive_cache_state() -> str:
    """What `make_room_for_batch_shapes` did in this process, or oneDNN's default when it was not called."""
    return _state.get("description", f"oneDNN's default ({ONEDNN_DEFAULT_CAPACITY} primitives)")
