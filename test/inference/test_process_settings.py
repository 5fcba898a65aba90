"""Process-wide settings are made where process_settings.py says, and measurements put them back."""

from __future__ import annotations

import pathlib
import re

import torch

from esnet_ros.inference.process_settings import torch_threads, torch_threads_during

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "esnet_ros"


def test_threads_for_a_measurement_come_back():
    before = torch.get_num_threads()
    try:
        torch_threads(2)
        with torch_threads_during(1):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        try:
            with torch_threads_during(1):
                raise RuntimeError("measurement failed")
        except RuntimeError:
            pass
        assert torch.get_num_threads() == 2
        torch_threads(0)  # 0 leaves the pool as it is
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_no_module_sets_torch_threads_or_inductor_flags_itself():
    """Only process_settings.py calls torch.set_num_threads / set_flush_denormal or sets inductor config."""
    pattern = re.compile(r"torch\.set_num_threads\(|set_flush_denormal\(|inductor_config\.\w+\s*=")
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.name != "process_settings.py" and pattern.search(path.read_text())
    ]
    assert offenders == []
