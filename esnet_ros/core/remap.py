"""Class remapping: a model's classes folded onto a planner's label space, read from YAML.

A planner rarely wants the model's own classes: Nav2's semantic_segmentation_layer, for one, gives a cost to
each class *name* its ``LabelInfo`` announces. A remap file says which model classes become which planner
class, under which id and color::

    unknown_label: 255          # optional: the value of pixels that are no planner class
                                #   (without it, the node's unknown_label parameter)
    classes:                    # the planner's classes, each with its own id
      - name: traversable
        id: 0                   # 0..254, unique; ids need not be contiguous
        color: [128, 64, 128]   # optional RGB 0..255 (default: the color of its first `from` class)
        from: [Road, Pavement]  # model class names (see the model's class table)
      - name: obstacle
        id: 1
        color: [220, 20, 60]
        from: [Car, Pedestrian, Bicyclist, Pole, Fence, Building, Tree, SignSymbol]
    drop: [Sky]                 # optional: model classes that become unknown_label

**Every model class must be accounted for**: listed in exactly one class's ``from`` or in ``drop``. A model
class that the file does not mention is an error (naming the classes left out), not a silent unknown: a
forgotten class (a pole, say) that quietly became "unknown" would vanish from the planner's map. Values
that are no model class (the model's ignore value, the node's unknown label) map to ``unknown_label``.

:func:`load_class_remap` reads a file and checks it against the model's :class:`~esnet_ros.core.labels.LabelSet`;
every error names the file and the line (from YAML's node marks). :class:`ClassRemap` holds the planner's class
table and two lookup tables: ``lut`` (model label -> planner id) and ``palette`` (planner id -> color).
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import numpy as np
import yaml

from esnet_ros.core.labels import LabelSet

__all__ = ["ClassRemap", "load_class_remap", "MAX_TARGET_ID"]

#: the largest planner class id (255 stays free for the usual unknown_label)
MAX_TARGET_ID = 254

_TOP_KEYS = ("unknown_label", "classes", "drop")
_CLASS_KEYS = ("name", "id", "color", "from")


@dataclasses.dataclass(frozen=True, eq=False)
class ClassRemap:
    """A planner's class table and the lookup tables that take model labels onto it.

    ``names[i]`` has id ``ids[i]``, is drawn in ``colors[i]`` and gathers the model classes ``sources[i]``.
    ``lut`` is ``(256,) uint8``: model label -> planner id (dropped classes and every value that is no model
    class -> ``unknown_label``). ``palette`` is ``(256,3) uint8``: planner id -> RGB, black for every other
    value, ``unknown_label`` included. Both arrays are read-only.
    """

    names: tuple[str, ...]
    ids: tuple[int, ...]
    colors: tuple[tuple[int, int, int], ...]
    sources: tuple[tuple[str, ...], ...]
    dropped: tuple[str, ...]
    unknown_label: int
    lut: np.ndarray
    palette: np.ndarray
    path: str = ""

    @classmethod
    def from_table(
        cls,
        model_labels: LabelSet,
        names: tuple[str, ...],
        ids: tuple[int, ...],
        colors: tuple[tuple[int, int, int], ...],
        sources: tuple[tuple[str, ...], ...],
        dropped: tuple[str, ...] = (),
        unknown_label: int = 255,
        path: str = "",
    ) -> ClassRemap:
        """Build the lookup tables for an already checked table (:func:`load_class_remap` checks a file)."""
        index = {name: i for i, name in enumerate(model_labels.names)}
        lut = np.full(256, unknown_label, np.uint8)
        palette = np.zeros((256, 3), np.uint8)
        for target_id, color, froms in zip(ids, colors, sources, strict=True):
            lut[[index[name] for name in froms]] = target_id
            palette[target_id] = color
        palette[unknown_label] = 0
        lut.flags.writeable = False
        palette.flags.writeable = False
        return cls(names, ids, colors, sources, dropped, unknown_label, lut, palette, path)

    @property
    def class_map(self) -> tuple[tuple[int, str], ...]:
        """``(id, name)`` of each planner class, as a ``vision_msgs/LabelInfo`` class map lists them."""
        return tuple(zip(self.ids, self.names, strict=True))

    def apply(self, labels: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``(H,W) uint8`` model labels -> ``(H,W) uint8`` planner ids (into ``out`` when given)."""
        if labels.dtype != np.uint8:
            raise TypeError(f"labels dtype={labels.dtype}; the remap takes uint8 model labels")
        return np.take(self.lut, labels, out=out, mode="clip")  # uint8 indices never clip; "clip" is unbuffered

    def colorize(self, target: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``(H,W) uint8`` planner ids -> ``(H,W,3) uint8`` RGB (unknown and unused ids black)."""
        if target.dtype != np.uint8:
            raise TypeError(f"target labels dtype={target.dtype}; colorize takes uint8 planner ids")
        return np.take(self.palette, target, axis=0, out=out, mode="clip")


def _line(node: yaml.Node) -> int:
    """The 1-based line where ``node`` starts (YAML marks count from 0)."""
    return node.start_mark.line + 1


class _File:
    """One remap file being read: its path and its YAML node tree, for errors that name the line."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self._construct = yaml.constructor.SafeConstructor()

    def error(self, node: yaml.Node, message: str) -> ValueError:
        return ValueError(f"remap file {self.path}, line {_line(node)}: {message}")

    def value(self, node: yaml.Node) -> Any:
        return self._construct.construct_object(node, deep=True)

    def mapping(self, node: yaml.Node, what: str, allowed: tuple[str, ...]) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """``key -> (key node, value node)``; unknown and repeated keys are errors."""
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, f"{what} must be a mapping with the keys {', '.join(allowed)}")
        found: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = self.value(key_node)
            if key not in allowed:
                raise self.error(key_node, f"unknown key {key!r} in {what}; allowed: {', '.join(allowed)}")
            if key in found:
                raise self.error(key_node, f"{key!r} appears twice in {what} (first on line {_line(found[key][0])})")
            found[key] = (key_node, value_node)
        return found

    def integer(self, node: yaml.Node, name: str, low: int, high: int, why: str) -> int:
        value = self.value(node)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise self.error(node, f"{name}={value!r} is out of range: must be an int {low}..{high} ({why})")
        return value

    def names(self, node: yaml.Node, what: str, allow_empty: bool = False) -> list[tuple[str, yaml.Node]]:
        """A list of class names (non-empty unless ``allow_empty``), each with its node (for the line of a bad one)."""
        if not isinstance(node, yaml.SequenceNode) or not (node.value or allow_empty):
            raise self.error(node, f"{what} must be a non-empty list of model class names, e.g. [Road, Pavement]")
        out = []
        for item in node.value:
            value = self.value(item)
            if not isinstance(value, str) or not value:
                raise self.error(item, f"{what} holds {value!r}; list model class names (strings)")
            out.append((value, item))
        return out

    def color(self, node: yaml.Node, name: str) -> tuple[int, int, int]:
        value = self.value(node)
        if (
            not isinstance(value, list)
            or len(value) != 3
            or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in value)
        ):
            raise self.error(node, f"class {name!r}: color={value!r} must be [R, G, B] with three ints 0..255")
        return (value[0], value[1], value[2])


@dataclasses.dataclass
class _Target:
    name: str
    id: int
    color: tuple[int, int, int] | None
    froms: list[tuple[str, yaml.Node]]


def _read_root(path: pathlib.Path) -> tuple[_File, yaml.Node]:
    if not path.is_file():
        raise FileNotFoundError(f"remap file {path} does not exist; see esnet_ros/core/remap.py for the YAML format")
    file = _File(path)
    try:
        root = yaml.compose(path.read_text(), Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f", line {mark.line + 1}" if mark is not None else ""
        context = f" ({exc.context} on line {exc.context_mark.line + 1})" if exc.context and exc.context_mark else ""
        raise ValueError(f"remap file {path}{line}: not valid YAML: {exc.problem or exc}{context}") from exc
    if root is None:
        raise ValueError(f"remap file {path} is empty; it needs a 'classes' list (format: esnet_ros/core/remap.py)")
    return file, root


def _read_classes(file: _File, node: yaml.Node) -> list[_Target]:
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        raise file.error(node, "'classes' must be a non-empty list of {name, id, from} entries")
    targets: list[_Target] = []
    seen_names: dict[str, yaml.Node] = {}
    seen_ids: dict[int, tuple[str, yaml.Node]] = {}
    for i, entry in enumerate(node.value):
        fields = file.mapping(entry, f"classes[{i}]", _CLASS_KEYS)
        for field in ("name", "id", "from"):
            if field not in fields:
                raise file.error(
                    entry, f"classes[{i}] has no {field!r}: each class needs name, id and from (color is optional)"
                )
        name_node, id_node = fields["name"][1], fields["id"][1]
        name = file.value(name_node)
        if not isinstance(name, str) or not name:
            raise file.error(name_node, f"classes[{i}] name={name!r} must be a non-empty string")
        if name in seen_names:
            raise file.error(name_node, f"class name {name!r} is used twice (first on line {_line(seen_names[name])})")
        target_id = file.integer(id_node, f"class {name!r}: id", 0, MAX_TARGET_ID, "uint8; 255 is left for unknown")
        if target_id in seen_ids:
            other, other_node = seen_ids[target_id]
            raise file.error(
                id_node,
                f"class {name!r} has id {target_id}, already the id of {other!r} (line "
                f"{_line(other_node)}); give each class its own id 0..{MAX_TARGET_ID}",
            )
        color = file.color(fields["color"][1], name) if "color" in fields else None
        froms = file.names(fields["from"][1], f"class {name!r}: from")
        seen_names[name] = name_node
        seen_ids[target_id] = (name, id_node)
        targets.append(_Target(name, target_id, color, froms))
    return targets


def _check_sources(
    file: _File, model: LabelSet, targets: list[_Target], drop: list[tuple[str, yaml.Node]], anchor: yaml.Node
) -> None:
    """Every model class named once, by a class's ``from`` or by ``drop``; and only model classes."""
    valid = ", ".join(model.names)
    claimed: dict[str, tuple[str | None, yaml.Node]] = {}
    uses = [(t.name, name, node) for t in targets for name, node in t.froms] + [(None, n, node) for n, node in drop]
    for owner, name, node in uses:
        if name not in model.names:
            raise file.error(node, f"{name!r} is not a class of the model ({model.name}); valid names: {valid}")
        if name in claimed:
            first_owner, first_node = claimed[name]
            first = "dropped" if first_owner is None else f"mapped to {first_owner!r}"
            now = "dropped" if owner is None else f"mapped to {owner!r}"
            raise file.error(
                node,
                f"model class {name!r} is {now} but already {first} (line {_line(first_node)}); "
                f"name each model class once",
            )
        claimed[name] = (owner, node)
    missing = [name for name in model.names if name not in claimed]
    if missing:
        raise file.error(
            anchor,
            f"model classes not mapped: {', '.join(missing)}; add each to a class's 'from' list, "
            f"or to 'drop' to make it unknown_label",
        )


def _unknown_label(
    file: _File, top: dict[str, tuple[yaml.Node, yaml.Node]], targets: list[_Target], parameter: int
) -> int:
    """The file's unknown_label, else the node's parameter; either way no class's id."""
    clash = {t.id: t for t in targets}
    if "unknown_label" in top:
        node = top["unknown_label"][1]
        value = file.integer(node, "unknown_label", 0, 255, "labels are uint8")
        if value in clash:
            raise file.error(
                node,
                f"unknown_label={value} is also the id of class {clash[value].name!r}; "
                f"pick a value no class uses (255 is usual)",
            )
        return value
    if not 0 <= parameter <= 255:
        raise ValueError(f"unknown_label={parameter} must be 0..255 (labels are uint8)")
    if parameter in clash:
        raise ValueError(
            f"remap file {file.path}: unknown_label={parameter} (the node's setting; the file sets none) "
            f"is also the id of class {clash[parameter].name!r}; set another unknown_label, "
            f"or give the file its own 'unknown_label:'"
        )
    return parameter


def load_class_remap(path: str | pathlib.Path, model_labels: LabelSet, unknown_label: int = 255) -> ClassRemap:
    """Read a remap file (format in this module's docstring) and check it against the model's classes.

    ``unknown_label`` is the node's parameter: the file's own ``unknown_label``, when it has one, wins. Raises
    ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file and the line for anything wrong
    in it: bad YAML, an unknown key, a missing name/id/from, an id outside 0..254 or used twice, a bad color, a
    name that is no model class, a model class named twice or not at all, an unknown_label that is a class id.
    """
    path = pathlib.Path(path)
    file, root = _read_root(path)
    top = file.mapping(root, "the remap file", _TOP_KEYS)
    if "classes" not in top:
        raise file.error(root, "the remap file has no 'classes' list (format: esnet_ros/core/remap.py)")
    targets = _read_classes(file, top["classes"][1])
    drop = file.names(top["drop"][1], "drop", allow_empty=True) if "drop" in top else []
    _check_sources(file, model_labels, targets, drop, (top["drop"] if "drop" in top else top["classes"])[0])
    unknown_label = _unknown_label(file, top, targets, unknown_label)
    model_colors = dict(zip(model_labels.names, model_labels.colors, strict=True))
    return ClassRemap.from_table(
        model_labels,
        names=tuple(t.name for t in targets),
        ids=tuple(t.id for t in targets),
        colors=tuple(t.color or tuple(model_colors[t.froms[0][0]]) for t in targets),
        sources=tuple(tuple(name for name, _ in t.froms) for t in targets),
        dropped=tuple(name for name, _ in drop),
        unknown_label=unknown_label,
        path=str(path),
    )
