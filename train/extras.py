"""The optional dependencies (`pip install 'hf-vanilla-transformer[export]'` and the like): imported where they are
used, with an error that says which extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType


def require_extra(module: str, purpose: str, extra: str = "export") -> ModuleType:
    """`import module`, or an ImportError naming `purpose` and the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"{purpose} needs the `{module}` package: pip install 'hf-vanilla-transformer[{extra}]'"
        ) from error
