"""Network input sizes: ESNet needs both sides divisible by 8; ``WIDTHxHEIGHT`` text parsed once.

Torch-free, so that light command-line front ends (``esnet demo --help``) can check sizes fast.
"""

from __future__ import annotations

__all__ = ["OUTPUT_STRIDE", "nearest_valid_sizes", "check_input_size", "parse_size"]

OUTPUT_STRIDE = 8


def nearest_valid_sizes(value: int, multiple: int = OUTPUT_STRIDE) -> tuple[int, int]:
    """The two multiples of ``multiple`` around ``value`` (the lower one is at least ``multiple``)."""
    lower = max(multiple, value // multiple * multiple)
    upper = max(multiple, -(-value // multiple) * multiple)
    if upper == lower:
        upper = lower + multiple
    return lower, upper


def check_input_size(width: int, height: int, what: str = "input") -> None:
    """Raise ``ValueError`` naming the nearest valid sizes unless both sides divide by 8."""
    for name, value in (("width", width), ("height", height)):
        if value <= 0 or value % OUTPUT_STRIDE:
            lo, hi = nearest_valid_sizes(max(int(value), 1))
            raise ValueError(
                f"{what} {name}={value} must be a positive multiple of {OUTPUT_STRIDE} "
                f"(ESNet downsamples 3 times); try {lo} or {hi}"
            )


def parse_size(
    text: str, what: str = "--input-size", *, network: bool = True, min_side: int = 16, example: str | None = None
) -> tuple[int, int]:
    """``"1024x512"`` -> ``(1024, 512)``; ``ValueError`` naming ``what`` and the fix.

    ``network=True`` (a network input) requires both sides to divide by 8 (:func:`check_input_size`);
    otherwise (an image size) each side must be at least ``min_side``.
    """
    try:
        w, h = (int(v) for v in str(text).strip().lower().split("x"))
    except ValueError:
        example = example or ("1024x512" if network else "2048x1024")
        raise ValueError(f"{what} {text!r} must look like WIDTHxHEIGHT, e.g. {example}") from None
    if network:
        check_input_size(w, h, what=what)
    elif w < min_side or h < min_side:
        raise ValueError(f"{what} {text!r} is too small; use at least {min_side}x{min_side}")
    return w, h
