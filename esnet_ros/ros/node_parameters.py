"""The node's parameters at run time: declared once, validated in the on-set callback, applied in the post-set one.

rclpy's three set-parameters callbacks are used as they are meant to be:

- **pre-set** (:meth:`NodeParameters._explain_sizes`): only explains, in the log, why rclpy's step-8 range
  refuses an input size (with the nearest valid sizes);
- **on-set** (:meth:`NodeParameters._validate`): accepts or refuses the whole change and applies nothing.
  A model change is checked by reading the weights (kept for the post-set callback, so nothing is read
  twice); a class remap or confidence threshold by building the label space against the serving model;
- **post-set** (:meth:`NodeParameters._apply`): the new values take effect: runtime values at the next frame,
  a new model loads in the background (:class:`~esnet_ros.ros.reload.ModelSlot`), and the node is told which
  parameters changed (``on_change``) to re-create what depends on them.

:func:`make_label_space` builds the label space the outputs are published in from the parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rcl_interfaces.msg import SetParametersResult
from rclpy.parameter import Parameter

from esnet_ros.core.remap import load_class_remap
from esnet_ros.inference.label_space import LabelSpace
from esnet_ros.inference.segmenter import Segmenter
from esnet_ros.ros.parameters import (
    MODEL_PARAMS,
    PARAMETERS,
    SIZE_PARAMS,
    ModelConfig,
    check_choices,
    check_model_config,
    check_size,
    ros_syntax,
)
from esnet_ros.ros.reload import MODEL_ERRORS, ModelSlot

__all__ = ["NodeParameters", "LABEL_SPACE_PARAMS", "make_label_space"]

LABEL_SPACE_PARAMS = ("min_confidence", "unknown_label", "class_remap")


def make_label_space(values: dict[str, Any], seg: Segmenter | None) -> LabelSpace | None:
    """The published label space: None (the model's classes as they are) unless a remap or a threshold.

    Raises ``ValueError``/``OSError`` naming the problem (a remap file's line, an unknown_label that is a class id)."""
    path, threshold = str(values["class_remap"]).strip(), float(values["min_confidence"])
    if seg is None or (not path and threshold == 0.0):
        return None
    unknown = int(values["unknown_label"])
    remap = load_class_remap(path, seg.labels, unknown) if path else None
    return LabelSpace.for_model(seg.labels, unknown_label=unknown, min_confidence=threshold, remap=remap)


class NodeParameters:
    """Declares :data:`~esnet_ros.ros.parameters.PARAMETERS` on ``node`` and runs its set-parameters callbacks.

    ``values`` holds the values in effect. ``configured()`` says whether the node has a model to check a change
    against; ``model`` reloads on a model change (``active()`` says whether to swap at the next frame);
    ``on_change(changed, values)`` runs after the values changed (not for a revert).
    """

    def __init__(
        self,
        node: Any,
        model: ModelSlot,
        *,
        configured: Callable[[], bool],
        active: Callable[[], bool],
        on_change: Callable[[set[str], dict[str, Any]], None],
    ) -> None:
        self.node, self.model = node, model
        self._configured, self._active, self._on_change = configured, active, on_change
        for name, (default, descriptor) in PARAMETERS.items():
            node.declare_parameter(name, default, descriptor)
        self.values: dict[str, Any] = {name: node.get_parameter(name).value for name in PARAMETERS}
        self._checked_model: tuple | None = None  # (ModelConfig, weights, labels) between the two callbacks
        self._reverting = False
        node.add_pre_set_parameters_callback(self._explain_sizes)
        node.add_on_set_parameters_callback(self._validate)
        node.add_post_set_parameters_callback(self._apply)

    def revert(self, previous: dict[str, Any]) -> None:
        """Set ``previous`` back without checking it (a model that failed to load in the background)."""
        self._reverting = True
        try:
            self.node.set_parameters([Parameter(name, value=value) for name, value in previous.items()])
        finally:
            self._reverting = False

    def _explain_sizes(self, params: list[Parameter]) -> list[Parameter]:
        for reason in filter(None, (check_size(p.name, p.value) for p in params if p.name in SIZE_PARAMS)):
            self.node.get_logger().warning(f"refused: {reason}")
        return params

    def _refuse(self, proposed: dict[str, Any], exc: BaseException) -> SetParametersResult:
        self.node.get_logger().warning(f"refused {', '.join(sorted(proposed))}: {exc}")
        return SetParametersResult(successful=False, reason=ros_syntax(exc))

    def _validate(self, params: list[Parameter]) -> SetParametersResult:
        self._checked_model = None
        proposed = {p.name: p.value for p in params if p.name in PARAMETERS}
        if not proposed or self._reverting:
            return SetParametersResult(successful=True)
        values = {**self.values, **proposed}
        reason = check_choices(values)
        if reason:
            return SetParametersResult(successful=False, reason=reason)
        if self._changed(values, LABEL_SPACE_PARAMS) and self.model.serving is not None:
            try:
                make_label_space(values, self.model.serving)
            except (OSError, ValueError) as exc:
                return self._refuse(proposed, exc)
        if self._changed(values, MODEL_PARAMS) and self._configured():
            cfg = ModelConfig.from_values(values)
            try:
                self._checked_model = (cfg, *check_model_config(cfg))
            except MODEL_ERRORS as exc:
                return self._refuse(proposed, exc)
        return SetParametersResult(successful=True)

    def _apply(self, params: list[Parameter]) -> None:
        values = {**self.values, **{p.name: p.value for p in params if p.name in PARAMETERS}}
        checked, self._checked_model = self._checked_model, None
        if self._reverting:
            self.values = values
            return
        if checked is not None:
            previous = {n: self.values[n] for n in self._changed(values, MODEL_PARAMS)}
            self.model.reload(*checked, previous, self._active)
        changed = set(self._changed(values, PARAMETERS))
        self.values = values
        if changed:
            self._on_change(changed, values)

    def _changed(self, values: dict[str, Any], names: Any) -> list[str]:
        return [n for n in names if values[n] != self.values[n]]
