"""The tree is lint-clean and formatted: ``ruff check`` and ``ruff format --check`` with the repo's ruff.toml.

Fix a failure with ``make format`` (``ruff format`` and ``ruff check --fix``), then the rest by hand.
"""

from __future__ import annotations

import pathlib
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG = REPO / "ruff.toml"


def ruff(*args: str, cwd: pathlib.Path = REPO) -> subprocess.CompletedProcess:
    try:
        from ruff.__main__ import find_ruff_bin
    except ImportError:
        pytest.fail("ruff is not installed: pip install -r requirements-dev.txt (make setup does)")
    return subprocess.run(
        [find_ruff_bin(), *args, "--config", str(CONFIG), "--no-cache"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_ruff_check_passes():
    proc = ruff("check", ".")
    assert proc.returncode == 0, f"ruff check failed (make format fixes some):\n{proc.stdout[-4000:]}{proc.stderr}"


def test_ruff_format_check_passes():
    proc = ruff("format", "--check", ".")
    assert proc.returncode == 0, f"files need `make format`:\n{proc.stdout[-4000:]}{proc.stderr}"


def test_the_gate_catches_unused_imports_long_lines_and_unformatted_code(tmp_path):
    """The same configuration fails on a file with an unused import, a 130-character line and bad layout."""
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nx = {  'a':1 }\ny = '" + "z" * 130 + "'\n")
    check = ruff("check", "--output-format", "concise", str(bad), cwd=tmp_path)
    assert check.returncode == 1
    assert "F401" in check.stdout and "E501" in check.stdout, check.stdout
    fmt = ruff("format", "--check", str(bad), cwd=tmp_path)
    assert fmt.returncode == 1
    assert "bad.py" in fmt.stdout + fmt.stderr
