"""Inference-only routing of a linear layer to oneDNN with a pre-packed weight (CPU, fp32).

torch sends an fp32 `nn.Linear` on the CPU to MKL's sgemm. oneDNN (torch's `mkldnn` backend) can
instead multiply by a weight that it has re-laid out ("packed") once for its kernels. At the shapes of
decoding, one or a few rows per sentence, that was 1.3x-2x faster for the pre-softmax linear layer
(§3.4; d_model -> vocabulary) and about 1.1x for the FFN's (§3.3) on an AMD EPYC with AVX-512
(`benchmarks/README.md`), so every linear layer of the model calls it: the attention projections
(§3.2.2), the FFN and the pre-softmax layer. The result is the same product, summed in another order:
it can differ from `F.linear` in the last bits of a float.

`onednn_linear(module, x)` takes that route only where nothing can notice except the speed: inside
`packed_weights()` (which `generate()` enters), no autograd, fp32 CPU tensors, no autocast, a plain
`nn.Linear` without hooks, oneDNN available and enabled (`torch.backends.mkldnn.flags(enabled=False)`
turns it off), and a layer the route covers on this CPU (`route()`). Everywhere else it is exactly `module(x)`.

Where it pays was measured in the model, decoding (`benchmarks/bench_model.py --decoding-only`, the rows "oneDNN
off", "oneDNN for all layers" or "oneDNN for the pre-softmax layer only"; `benchmarks/bench_onednn_route.py`, whole
`generate()` calls of 1 to 64 sentences and `translate()` of test2016, packing included, each route), not assumed:
- on AMD EPYC CPUs with AVX-512 the route for every layer made greedy and beam-4 decoding faster in every run (up
  to 1.3x);
- on an Intel Xeon (Sapphire Rapids class, with AMX) slower in every run of two sessions (greedy 1.22x-1.23x
  Marian's speed with `F.linear`, 0.96x-1.04x with oneDNN);
- on an AMD EPYC with AVX2 only, every layer gained nothing per call (0.98x-1.04x from 8 sentences up) and made
  one-sentence greedy calls, the pipeline's case, 0.81x as fast, the packing of 49 weights being most of such a
  call's cost; the pre-softmax layer alone (§3.4, d_model -> vocabulary: the largest product of a step, and a
  single packing) was as fast or faster in every call measured, one sentence or 64, greedy or beam 4 (0.98x-1.18x
  F.linear's speed), and in `translate()` (1.03x / 1.05x), where every layer was 0.80x-1.07x
  (`benchmarks/results/onednn-route-avx2-session21.json`).
`F.linear` on the CPU is MKL's sgemm, Intel's library, which chooses its fastest kernels on Intel's CPUs and is known
to take slower paths on others (on that AVX2 AMD EPYC its product of one row by the 8,000 x 256 pre-softmax weight
took 2.6x the CPU time of oneDNN's, and 1.75x that of MKL itself with the weight stored transposed;
`benchmarks/results/linear-kernels-avx2-session21.json`). So by default (`prefer_onednn(None)`, `route()`) the
route covers every layer on AMD CPUs with AVX-512, the pre-softmax layer on other AMD CPUs, and no layer elsewhere;
`prefer_onednn("all" | "pre-softmax" | "none")` decides it for a block (True and False stand for "all" and "none";
tests use it to check the route on every CPU, the benchmarks to measure each).

A packed weight is a copy, so it lives only as long as the weights cannot change: one `packed_weights()`
block, i.e. one `generate()` call (a decoding of many steps reuses it; the next call packs again: 31 ms for
the small preset's 49 weights in a profile on an AVX2-only AMD EPYC, `decoding-profile-avx2-session20.txt`),
or one `train.translate.translate()` of many batches, which holds a block around its calls.
It is not kept longer, because nothing reliable says when a weight has changed: torch's fused AdamW
(transformers' default optimizer) updates parameters in place without bumping their version counter, and
a cache kept across calls, keyed on that counter, served the weights of an earlier validation to every
later one of a training run (validation BLEU stalled while the loss fell; `tests/test_decoding_fast_path.py`
trains with it). Within a block the key (storage, version, shape) is still checked.

The two operators (`torch.ops.mkldnn._reorder_linear_weight`, `torch.ops.mkldnn._linear_pointwise`) are
torch's own, used by its inductor compiler for frozen CPU models, but private. So the first call checks
them once against `F.linear`; if they are missing or disagree, it warns once and every call takes the
plain `F.linear` path.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator

import torch
from torch import nn

logger = logging.getLogger(__name__)

# Inside `packed_weights()`: module -> ((weight storage, version, shape), packed weight); outside: None. Kept
# outside the modules: a packed weight is an opaque oneDNN tensor, which `copy.deepcopy` and pickling of the
# model could not handle.
_PACKED: contextvars.ContextVar[dict | None] = contextvars.ContextVar("hvt_packed_weights", default=None)
ROUTES = ("none", "pre-softmax", "all")
"""The layers the route may cover: none, the pre-softmax layer only, or every linear layer."""
# The route a caller chose for a block (one of ROUTES), or None: decided by the CPU (`route()`).
_PREFERRED: contextvars.ContextVar[str | None] = contextvars.ContextVar("hvt_prefer_onednn", default=None)
_status: dict[str, bool] = {}
_vendor: dict[str, str] = {}
_flags: dict[str, frozenset[str]] = {}


@contextlib.contextmanager
def packed_weights() -> Iterator[None]:
    """A block in which the model's weights do not change (one `generate()` call, or a `translate()` of many
    batches): `onednn_linear` may pack each weight once and reuse it. A block inside another reuses the outer
    block's packed weights; they are dropped when the outermost block ends."""
    if _PACKED.get() is not None:
        yield
        return
    token = _PACKED.set({})
    try:
        yield
    finally:
        _PACKED.reset(token)


@contextlib.contextmanager
def prefer_onednn(preferred: str | bool | None) -> Iterator[None]:
    """A block in which the oneDNN route covers the layers `preferred` names (one of `ROUTES`; True stands for
    "all", False for "none"), or those it covers on this CPU by default (None, as outside any block; `route()`)."""
    if isinstance(preferred, bool):
        preferred = "all" if preferred else "none"
    if preferred is not None and preferred not in ROUTES:
        raise ValueError(f"prefer_onednn takes one of {ROUTES}, True, False or None, not {preferred!r}")
    token = _PREFERRED.set(preferred)
    try:
        yield
    finally:
        _PREFERRED.reset(token)


def _read_cpuinfo() -> None:
    """The vendor and feature flags of the first CPU Linux lists ("" and none where /proc/cpuinfo does not exist)."""
    vendor, flags = "", frozenset()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("vendor_id") and not vendor:
                    vendor = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = frozenset(line.split(":", 1)[1].split())
                if vendor and flags:
                    break
    except OSError:
        pass
    _vendor.setdefault("vendor", vendor)
    _flags.setdefault("flags", flags)


def cpu_vendor() -> str:
    """The CPU's vendor as Linux reports it (`GenuineIntel`, `AuthenticAMD`, ...); "" where /proc/cpuinfo does not
    exist or does not say."""
    if "vendor" not in _vendor:
        _read_cpuinfo()
    return _vendor["vendor"]


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux reports them (`avx2`, `avx512f`, ...); none where /proc/cpuinfo does not
    exist."""
    if "flags" not in _flags:
        _read_cpuinfo()
    return _flags["flags"]


def route() -> str:
    """The layers the oneDNN route covers here by default (one of `ROUTES`), where it was measured faster in the
    model (see the module docstring): every layer on AMD CPUs with AVX-512, the pre-softmax layer on other AMD CPUs;
    none elsewhere, and where the CPU is unknown (`F.linear`)."""
    if cpu_vendor() != "AuthenticAMD":
        return "none"
    return "all" if "avx512f" in cpu_flags() else "pre-softmax"


def _covers(pre_softmax: bool) -> bool:
    chosen = _PREFERRED.get() or route()
    return chosen == "all" or (chosen == "pre-softmax" and pre_softmax)


def _usable() -> bool:
    """Whether torch's private oneDNN linear operators exist and agree with `F.linear` (checked once)."""
    if "ok" not in _status:
        try:
            generator = torch.Generator().manual_seed(0)
            x = torch.randn(3, 2, 16, generator=generator)
            weight, bias = torch.randn(24, 16, generator=generator), torch.randn(24, generator=generator)
            packed = torch.ops.mkldnn._reorder_linear_weight(weight, None)
            got = torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")
            torch.testing.assert_close(got, nn.functional.linear(x, weight, bias), rtol=1e-5, atol=1e-5)
            _status["ok"] = True
        except Exception as error:  # missing operator, changed signature, wrong numbers
            logger.warning("oneDNN linear unavailable (%s: %s); using F.linear", type(error).__name__, error)
            _status["ok"] = False
    return _status["ok"]


def _eligible(module: nn.Module, x: torch.Tensor) -> bool:
    return (
        type(module) is nn.Linear
        and x.dtype == torch.float32
        and module.weight.dtype == torch.float32
        and x.device.type == "cpu"
        and module.weight.device.type == "cpu"
        and not module._forward_hooks
        and not module._forward_pre_hooks
        and not torch.is_grad_enabled()
        and not torch.is_autocast_enabled("cpu")
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
        and _usable()
    )


def onednn_linear(module: nn.Linear, x: torch.Tensor, pre_softmax: bool = False) -> torch.Tensor:
    """`module(x)`, x (..., in_features) -> (..., out_features), through oneDNN with a packed weight
    inside `packed_weights()` when that is invisible and the route covers the layer (`pre_softmax`: the model's
    d_model -> vocabulary layer, §3.4; see the module docstring), else exactly `module(x)`."""
    packed = _PACKED.get()
    if packed is None or not _covers(pre_softmax) or not _eligible(module, x):  # cheapest first: per layer per step
        return module(x)
    weight = module.weight
    key = (weight.data_ptr(), weight._version, tuple(weight.shape))
    cached = packed.get(module)
    if cached is None or cached[0] != key:
        cached = (key, torch.ops.mkldnn._reorder_linear_weight(weight.detach(), None))
        packed[module] = cached
    return torch.ops.mkldnn._linear_pointwise(x, cached[1], module.bias, "none", [], "")
