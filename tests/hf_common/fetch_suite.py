"""Assemble transformers' own common model tests for the INSTALLED transformers version.

transformers ships its test-suite only in the source distribution on PyPI, and that sdist holds just
the top-level `tests/*.py` files: `tests/test_modeling_common.py` (the `ModelTesterMixin`) is there,
but the two modules it imports, `tests/generation/test_utils.py` (`GenerationTesterMixin`) and
`tests/exporters/test_export.py` (`ExportTesterMixin`), are not. So the suite is put together from

1. the sdist of exactly the installed version, fetched with
   `pip download --no-deps --no-binary :all: transformers==<version>` (PyPI is all CI can reach), of
   which the `tests/` tree is extracted, and
2. the missing files, vendored in this repository under `tests/hf_common/vendor/` (each one names its
   source repository and commit at the top), copied over the extracted tree.

The result is a cached directory (reused by later runs)::

    <cache>/transformers-tests-<version>/transformers_tests/   # importable package
        __init__.py, test_modeling_common.py, ...              # from the sdist
        generation/test_utils.py, exporters/test_export.py     # from vendor/

`<cache>` is `$HVT_TRANSFORMERS_TESTS` if set, else `~/.cache/hf-vanilla-transformer`. The package is
named `transformers_tests`, not `tests`, because this repository's own test modules import
`tests.helpers`: the two must not share a package name. transformers' modules import each other
relatively (`from .generation.test_utils import ...`), which works under any package name.

Offline use: set `HVT_TRANSFORMERS_SDIST=/path/to/transformers-<version>.tar.gz` to skip the download.

Command line (CI can prefetch before pytest; prints the directory to put on `sys.path`)::

    python tests/hf_common/fetch_suite.py
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "transformers_tests"
VENDOR_DIR = Path(__file__).resolve().parent / "vendor"
DOWNLOAD_TIMEOUT_S = 600


class SuiteUnavailable(RuntimeError):
    """The transformers test-suite could not be assembled (e.g. no access to PyPI)."""


def installed_transformers_version() -> str:
    import transformers

    return transformers.__version__


def cache_root() -> Path:
    base = os.environ.get("HVT_TRANSFORMERS_TESTS")
    return Path(base).expanduser() if base else Path.home() / ".cache" / "hf-vanilla-transformer"


def _vendor_files() -> list[Path]:
    return sorted(p for p in VENDOR_DIR.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def _vendor_digest() -> str:
    """Hash of the vendored overlay: a changed vendor file rebuilds the cached tree."""
    digest = hashlib.sha256()
    for path in _vendor_files():
        digest.update(path.relative_to(VENDOR_DIR).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _download_sdist(version: str, dest: Path) -> Path:
    local = os.environ.get("HVT_TRANSFORMERS_SDIST")
    if local:
        path = Path(local).expanduser()
        if not path.is_file():
            raise SuiteUnavailable(f"HVT_TRANSFORMERS_SDIST={local} is not a file")
        return path
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        "--disable-pip-version-check",
        "--no-input",
        "-d",
        str(dest),
        f"transformers=={version}",
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT_S)
    except subprocess.TimeoutExpired as error:
        raise SuiteUnavailable(f"`{' '.join(command)}` timed out after {DOWNLOAD_TIMEOUT_S}s") from error
    archives = sorted(dest.glob(f"transformers-{version}.tar.gz"))
    if result.returncode != 0 or not archives:
        raise SuiteUnavailable(
            f"could not download the transformers {version} sdist (needed for its test-suite).\n"
            f"$ {' '.join(command)}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )
    return archives[0]


def _extract_tests(archive: Path, version: str, target: Path) -> None:
    """Copy `transformers-<version>/tests/**` from the sdist into `target` (and nothing else)."""
    prefix = f"transformers-{version}/tests/"
    count = 0
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            if not member.isfile() or not member.name.startswith(prefix):
                continue
            relative = Path(member.name[len(prefix) :])
            if relative.is_absolute() or ".." in relative.parts:
                continue  # never write outside the target directory
            out = target / relative
            out.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst)
            count += 1
    if not (target / "test_modeling_common.py").is_file():
        raise SuiteUnavailable(f"{archive.name} has no tests/test_modeling_common.py ({count} test files found)")


def _overlay_vendor(target: Path) -> None:
    """Copy the vendored files the sdist lacks; make every directory a package."""
    for path in _vendor_files():
        out = target / path.relative_to(VENDOR_DIR)
        if out.exists():
            # The sdist gained this file: prefer the released one, and say so (the vendor copy is stale).
            print(f"[fetch_suite] sdist already has {out.relative_to(target)}; vendored copy not used", file=sys.stderr)
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, out)
    for directory in [target, *[p for p in target.rglob("*") if p.is_dir()]]:
        if directory.name != "__pycache__":
            (directory / "__init__.py").touch(exist_ok=True)


def ensure_suite(version: str | None = None) -> Path:
    """Return the directory to put on `sys.path` so that `import transformers_tests` works.

    Builds it on first use (download + extract + overlay) under a file lock; later calls reuse it.
    Raises `SuiteUnavailable` if the sdist cannot be obtained.
    """
    from filelock import FileLock  # a dependency of huggingface_hub, hence always installed with transformers

    version = version or installed_transformers_version()
    root = cache_root() / f"transformers-tests-{version}"
    marker = root / PACKAGE / ".complete"
    stamp = f"transformers=={version} vendor={_vendor_digest()}"
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / ".lock"), timeout=DOWNLOAD_TIMEOUT_S + 60):
        if marker.is_file() and marker.read_text() == stamp:
            return root
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            tmp_path = Path(tmp)
            archive = _download_sdist(version, tmp_path / "download")
            staging = tmp_path / PACKAGE
            _extract_tests(archive, version, staging)
            _overlay_vendor(staging)
            (staging / ".complete").write_text(stamp)
            final = root / PACKAGE
            if final.exists():
                shutil.rmtree(final)
            os.replace(staging, final)
    return root


if __name__ == "__main__":
    try:
        print(ensure_suite(sys.argv[1] if len(sys.argv) > 1 else None))
    except SuiteUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
