"""The one helper that builds every ``ParameterDescriptor`` of the package (the node's and the camera's).

Kept apart from :mod:`esnet_ros.ros.parameters` so that the synthetic camera can use it without
importing the engine (and torch).
"""

from __future__ import annotations

from collections.abc import Sequence

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

__all__ = ["descriptor", "choices_of"]

CHOICES_PREFIX = "one of: "


def descriptor(
    description: str,
    *,
    choices: Sequence[str] | None = None,
    int_range: tuple[int, int] | None = None,
    int_step: int = 1,
    float_range: tuple[float, float] | None = None,
    read_only: bool = False,
) -> ParameterDescriptor:
    """A ``ParameterDescriptor``; string ``choices`` go to ``additional_constraints`` ("one of: ...").

    ``int_range`` with ``int_step``: rclpy accepts ``from + k * step`` and ``to`` itself.
    """
    d = ParameterDescriptor(description=description, read_only=read_only)
    if choices:
        d.additional_constraints = CHOICES_PREFIX + ", ".join(choices)
    if int_range:
        d.integer_range = [IntegerRange(from_value=int_range[0], to_value=int_range[1], step=int_step)]
    if float_range:
        d.floating_point_range = [FloatingPointRange(from_value=float_range[0], to_value=float_range[1], step=0.0)]
    return d


def choices_of(d: ParameterDescriptor) -> list[str]:
    """The allowed values a :func:`descriptor` recorded (empty when it has none)."""
    text = d.additional_constraints
    return text[len(CHOICES_PREFIX) :].split(", ") if text.startswith(CHOICES_PREFIX) else []
