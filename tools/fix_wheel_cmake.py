"""Rewrite the wheel builder's Python paths baked into the ROS wheels' CMake exports.

The Kilted wheels export CMake targets that include
``/opt/python/cp311-cp311/include/python3.11`` and the builder's NumPy include dir;
CMake refuses targets with non-existent include paths.  This replaces both with this
interpreter's paths.  Idempotent: files already fixed are left untouched.

Usage: python tools/fix_wheel_cmake.py <venv>
"""

import pathlib
import sys
import sysconfig

import numpy

BUILDER_PREFIX = "/opt/python/cp311-cp311"


def main(venv: str) -> int:
    replacements = {
        f"{BUILDER_PREFIX}/lib/python3.11/site-packages/numpy/_core/include": numpy.get_include(),
        f"{BUILDER_PREFIX}/include/python3.11": sysconfig.get_paths()["include"],
    }
    changed = 0
    for path in pathlib.Path(venv, "share").rglob("*.cmake"):
        text = path.read_text(errors="surrogateescape")
        if BUILDER_PREFIX not in text:
            continue
        for old, new in replacements.items():
            text = text.replace(old, new)
        path.write_text(text, errors="surrogateescape")
        changed += 1
    print(f"[setup] fixed {changed} CMake file(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
