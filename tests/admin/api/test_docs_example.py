"""The Python example in docs/api.md runs as written: it creates a task, waits for it and prints the summary."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "api.md"


def python_example() -> str:
    blocks = re.findall(r"^```python\n(.*?)^```", DOC.read_text(encoding="utf-8"), flags=re.M | re.S)
    assert blocks, "docs/api.md has no ```python block"
    return blocks[0]


def run_example(instance: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SCHOLARISE_", "DATABASE_", "REDIS_", "CLERK_", "MAIL_"))}
    env.update(SCHOLARISE_INSTANCE_PATH=str(instance), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", python_example()], cwd=instance.parent, env=env,
                          capture_output=True, text=True, timeout=180)


@pytest.mark.slow
def test_the_python_example_in_the_docs_creates_a_task_and_prints_its_summary(tmp_path: Path) -> None:
    first = run_example(tmp_path / "instance")
    assert first.returncode == 0, first.stderr
    assert re.fullmatch(r"Task #1: COMPLETED - 2 created, 0 already existed, 0 failed\n", first.stdout), first.stdout
    again = run_example(tmp_path / "instance")  # the docs promise idempotent rows on a second run
    assert again.returncode == 0, again.stderr
    assert "Task #2: COMPLETED - 0 created, 2 already existed, 0 failed" in again.stdout
