"""The README's usage example runs as written (in a folder with small train.de / train.en files)."""

import re
import subprocess
import sys

from tests.helpers import REPO_ROOT, multi30k_file


def readme_python_blocks() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_usage_example_runs(tmp_path):
    blocks = readme_python_blocks()
    assert blocks, "the README has no python example"
    for lang in ("de", "en"):
        lines = multi30k_file(f"train.{lang}").read_text(encoding="utf-8").splitlines()[:3000]
        (tmp_path / f"train.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    script = tmp_path / "example.py"
    script.write_text(blocks[0], encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={"PYTHONPATH": str(REPO_ROOT), **_env()},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "out" / "model.safetensors").is_file()
    assert (tmp_path / "out" / "pipeline_translation.py").is_file()


def _env() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
