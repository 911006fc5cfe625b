"""The transformers releases this model supports, and the one place that adapts to their differences.

A model shared on the Hub runs this package's code (copied next to the weights) against whatever
transformers the *user* has installed, so the pin in `pyproject.toml` does not protect them. This
module is therefore imported by the modeling code itself (it is shipped with it) and, at import:

- warns (`TransformersVersionWarning`) when the installed transformers is outside
  `TESTED_TRANSFORMERS`, the range CI tests (the newest release in it and its floor);
- raises `ImportError` for releases known to break the model (`KNOWN_BROKEN`);
- works out, by feature detection rather than by version number, how the installed release names
  the key/value cache.

Everything version-dependent or private that the model touches lives here, and each piece fails
loudly (an error naming the installed version) when the internals it relies on are not there.

The cache rename (transformers 5.24). Up to 5.23 `generate()` passes the cache to the model as
`past_key_values=...` and reads `outputs.past_key_values`; from 5.24 on it passes `cache=...` and
reads `outputs.cache` (the old names still work in 5.24, with deprecation warnings). A model that
only knew the old name silently decoded without history under 5.24. The model's `forward` methods
accept both names (`resolve_cache`) and return the cache under the installed name (`CACHE_NAME`).
"""

from __future__ import annotations

import dataclasses
import inspect
import warnings

import transformers
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from transformers.modeling_outputs import Seq2SeqLMOutput

TESTED_TRANSFORMERS = SpecifierSet(">=5.23,<5.26")
"""transformers releases the test-suite passes on (CI: the newest release in range and the floor).
`pyproject.toml` declares the same range (a test checks that they agree). Raise the cap only
together with a CI run on the new release."""

KNOWN_BROKEN: dict[str, str] = {
    "<5.0": "transformers 4.x lacks the v5 APIs this model is written against "
    "(typed @strict configs, transformers.initialization, EncoderDecoderCache layers, masking_utils)",
}
"""Version specifiers known not to work, with the reason: importing the model raises there."""

INSTALLED_TRANSFORMERS = Version(transformers.__version__)


class TransformersVersionWarning(UserWarning):
    """The installed transformers release is outside the range this model was tested on."""


def check_transformers_version(version: Version | str = INSTALLED_TRANSFORMERS) -> None:
    """Raise `ImportError` for a release known to break the model; warn outside the tested range."""
    version = Version(str(version))
    for spec, reason in KNOWN_BROKEN.items():
        if version in SpecifierSet(spec):
            raise ImportError(
                f"hf-vanilla-transformer does not work with transformers {version}: {reason}. "
                f"Install a tested release: pip install 'transformers{TESTED_TRANSFORMERS}'"
            )
    if version not in TESTED_TRANSFORMERS:
        warnings.warn(
            f"hf-vanilla-transformer was tested with transformers{TESTED_TRANSFORMERS}, but transformers "
            f"{version} is installed. It may work; if decoding looks wrong, compare generate(use_cache=True) "
            f"with use_cache=False, or install a tested release: pip install 'transformers{TESTED_TRANSFORMERS}'",
            TransformersVersionWarning,
            stacklevel=2,
        )


def _installed_cache_name() -> str:
    fields = {field.name for field in dataclasses.fields(Seq2SeqLMOutput)}
    for name in ("cache", "past_key_values"):
        if name in fields:
            return name
    raise ImportError(
        f"transformers {INSTALLED_TRANSFORMERS}: Seq2SeqLMOutput has neither a `cache` nor a `past_key_values` "
        f"field, so this model cannot return its key/value cache. Tested releases: transformers{TESTED_TRANSFORMERS}"
    )


CACHE_NAME = _installed_cache_name()
"""What the installed transformers calls the key/value cache: `"cache"` (5.24+) or `"past_key_values"`."""


def resolve_cache(cache, past_key_values, where: str):
    """The cache a `forward` was given under either name.

    transformers itself passes the installed release's name. A caller using the old name on a
    release that renamed it gets transformers' own deprecation warning (as in-library models do).
    """
    if past_key_values is None:
        return cache
    if cache is not None and cache is not past_key_values:
        raise ValueError(f"{where}: got both `cache` and `past_key_values`; pass the cache once")
    if CACHE_NAME == "cache":
        warnings.warn(
            f"`past_key_values` is deprecated and will be removed in version 5.40.0 for {where}. Use `cache` instead.",
            FutureWarning,
            stacklevel=3,
        )
    return past_key_values


def cache_field(cache) -> dict:
    """`{CACHE_NAME: cache}`, to build model outputs under the name the installed release reads."""
    return {CACHE_NAME: cache}


def output_cache(outputs):
    """The cache of a model output, read without touching the deprecated name."""
    return getattr(outputs, CACHE_NAME, None)


# ---------------------------------------------------------------------------------------------
# huggingface_hub's @strict wraps a validator's ValueError in StrictDataclassClassValidationError,
# which is not a ValueError. The config unwraps it (users `except ValueError`). That relies on the
# decorator's marker attribute, which lets a replacement `validate` count as the decorator's own.


def unwrap_strict_validation_errors(config_class: type) -> None:
    """Make `config_class.validate` raise the validators' own `ValueError`s (message prefixed)."""
    from huggingface_hub.errors import StrictDataclassClassValidationError

    strict_validate = getattr(config_class, "validate", None)
    if not getattr(strict_validate, "__is_defined_by_strict_decorator__", False):
        raise ImportError(
            f"{config_class.__name__}.validate is not the one huggingface_hub's @strict defines (the decorator's "
            "internals changed): config validation errors would not be ValueErrors. Tested releases: "
            f"transformers{TESTED_TRANSFORMERS} with the huggingface_hub they require."
        )

    def validate(self) -> None:
        try:
            strict_validate(self)
        except StrictDataclassClassValidationError as error:
            if isinstance(error.__cause__, ValueError):
                raise ValueError(f"Invalid {config_class.__name__}: {error.__cause__}") from None
            raise

    validate.__is_defined_by_strict_decorator__ = True  # lets @strict subclasses override it again
    config_class.validate = validate


# ---------------------------------------------------------------------------------------------
# The paper's beam score needs transformers' beam search to rank finished hypotheses with the GNMT
# length penalty. transformers has no public hook for that (its `_get_top_k_continuations` carries a
# TODO for "an optional beam scorer function"; LogitsProcessor and StoppingCriteria cannot change how
# *finished* beams are ranked, and `custom_generate` would mean copying the whole beam search). So
# the model overrides two private methods of GenerationMixin, and this check makes sure they still
# exist with the keyword arguments the overrides read, failing loudly before any beam is ranked.

BEAM_HOOKS = {
    "_update_finished_beams": ("topk_log_probs", "cur_len", "decoder_prompt_len", "length_penalty"),
    "_check_early_stop_heuristic": (
        "running_beam_scores",
        "cur_len",
        "max_length",
        "decoder_prompt_len",
        "early_stopping",
        "length_penalty",
    ),
}


def check_beam_search_hooks() -> None:
    """Raise `RuntimeError` if GenerationMixin's beam-ranking methods changed under the GNMT override."""
    from transformers import GenerationMixin

    for name, needed in BEAM_HOOKS.items():
        method = getattr(GenerationMixin, name, None)
        if method is None:
            problem = "no longer exists"
        else:
            missing = [arg for arg in needed if arg not in inspect.signature(method).parameters]
            problem = f"no longer takes {missing}" if missing else None
        if problem:
            raise RuntimeError(
                f"transformers {INSTALLED_TRANSFORMERS}: GenerationMixin.{name} {problem}, so beam search cannot "
                "apply the paper's GNMT length penalty. Decode with length_penalty_form='hf' (transformers' own "
                f"penalty), or install a tested release: pip install 'transformers{TESTED_TRANSFORMERS}'"
            )


check_transformers_version()
