"""tools/device_check.sh: valid bash, and without CUDA it says so and exits 3 (writing nothing else)."""

import pathlib
import subprocess

import pytest
import torch

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "tools" / "device_check.sh"


def test_script_parses():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: run the script itself")
def test_without_cuda_it_stops_with_the_reason(tmp_path):
    done = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3
    assert "device_check: torch sees no CUDA device; nothing to check" in done.stderr
    assert not (tmp_path / "out" / "bench_cuda.json").exists()
