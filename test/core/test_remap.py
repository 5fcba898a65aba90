"""esnet_ros.core.remap: the remap YAML onto CamVid's classes, the lookup tables, and every error with its line."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from esnet_ros.core.labels import camvid
from esnet_ros.core.remap import ClassRemap, load_class_remap

# line numbers below refer to this text (line 1: unknown_label)
BASE = """\
unknown_label: 255
classes:
  - name: traversable
    id: 0
    color: [128, 64, 128]
    from: [Road, Pavement]
  - name: obstacle
    id: 1
    color: [220, 20, 60]
    from: [Car, Pedestrian, Bicyclist, Pole, Fence, Building, Tree, SignSymbol]
drop: [Sky]
"""
CAMVID_NAMES = "Sky, Building, Pole, Road, Pavement, Tree, SignSymbol, Fence, Car, Pedestrian, Bicyclist"


def write(tmp_path, text: str):
    path = tmp_path / "remap.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def load(tmp_path, text: str, **kwargs) -> ClassRemap:
    return load_class_remap(write(tmp_path, text), camvid(), **kwargs)


def error(tmp_path, text: str, **kwargs) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ValueError) as info:
        load_class_remap(path, camvid(), **kwargs)
    message = str(info.value)
    assert message.startswith(f"remap file {path}"), message
    return message.removeprefix(f"remap file {path}")


def test_the_tables_map_every_model_class(tmp_path):
    remap = load(tmp_path, BASE)
    assert remap.names == ("traversable", "obstacle") and remap.ids == (0, 1)
    assert remap.colors == ((128, 64, 128), (220, 20, 60))
    assert remap.sources == (
        ("Road", "Pavement"),
        ("Car", "Pedestrian", "Bicyclist", "Pole", "Fence", "Building", "Tree", "SignSymbol"),
    )
    assert remap.dropped == ("Sky",) and remap.unknown_label == 255
    assert remap.class_map == ((0, "traversable"), (1, "obstacle"))
    expected = {
        "Sky": 255,
        "Building": 1,
        "Pole": 1,
        "Road": 0,
        "Pavement": 0,
        "Tree": 1,
        "SignSymbol": 1,
        "Fence": 1,
        "Car": 1,
        "Pedestrian": 1,
        "Bicyclist": 1,
    }
    assert remap.lut.shape == (256,) and remap.lut.dtype == np.uint8
    for model_id, name in enumerate(camvid().names):
        assert remap.lut[model_id] == expected[name], name
    assert (remap.lut[11:] == 255).all()  # CamVid's void (11) and every other value: unknown
    assert remap.palette.shape == (256, 3) and remap.palette.dtype == np.uint8
    assert tuple(remap.palette[0]) == (128, 64, 128) and tuple(remap.palette[1]) == (220, 20, 60)
    assert not remap.palette[2:].any()  # unused ids and unknown_label draw black
    with pytest.raises(ValueError):
        remap.lut[0] = 3  # read-only


def test_apply_and_colorize_with_and_without_out(tmp_path):
    remap = load(tmp_path, BASE)
    labels = np.array([[0, 3, 4, 8], [11, 255, 10, 2]], np.uint8)
    want = np.array([[255, 0, 0, 1], [255, 255, 1, 1]], np.uint8)
    assert np.array_equal(remap.apply(labels), want)
    out = np.empty_like(labels)
    assert remap.apply(labels, out=out) is out and np.array_equal(out, want)
    colors = remap.colorize(want)
    assert colors.shape == (2, 4, 3) and colors.dtype == np.uint8
    assert tuple(colors[0, 1]) == (128, 64, 128) and tuple(colors[0, 3]) == (220, 20, 60)
    assert tuple(colors[0, 0]) == (0, 0, 0)
    rgb = np.empty((2, 4, 3), np.uint8)
    assert remap.colorize(want, out=rgb) is rgb and np.array_equal(rgb, colors)
    with pytest.raises(TypeError, match="labels dtype=int64; the remap takes uint8 model labels"):
        remap.apply(labels.astype(np.int64))


def test_sparse_ids_default_color_and_unknown_label_from_the_node(tmp_path):
    remap = load(
        tmp_path,
        """\
        classes:
          - name: road
            id: 200
            from: [Road]
          - name: rest
            id: 7
            from: [Sky, Building, Pole, Pavement, Tree, SignSymbol, Fence, Car, Pedestrian, Bicyclist]
        """,
        unknown_label=100,
    )
    assert remap.unknown_label == 100  # the file sets none: the node's value
    assert remap.lut[3] == 200 and remap.lut[0] == 7 and remap.lut[11] == 100 and remap.lut[255] == 100
    assert remap.colors == ((128, 64, 128), (128, 128, 128))  # each its first model class's color
    assert tuple(remap.palette[200]) == (128, 64, 128) and not remap.palette[100].any()
    assert load(tmp_path, BASE, unknown_label=100).unknown_label == 255  # the file's own value wins


def test_an_empty_drop_list_is_fine(tmp_path):
    text = BASE.replace("from: [Road, Pavement]", "from: [Road, Pavement, Sky]").replace("drop: [Sky]", "drop: []")
    assert load(tmp_path, text).dropped == ()


@pytest.mark.parametrize(
    "old, new, expected",
    [
        (
            "[Road, Pavement]",
            "[Road, Sidewalk]",
            f", line 6: 'Sidewalk' is not a class of the model (camvid); valid names: {CAMVID_NAMES}",
        ),
        (
            "drop: [Sky]",
            "drop: [Sky, Clouds]",
            f", line 11: 'Clouds' is not a class of the model (camvid); valid names: {CAMVID_NAMES}",
        ),
        (
            "    id: 1\n",
            "    id: 0\n",
            ", line 8: class 'obstacle' has id 0, already the id of 'traversable' (line 4); "
            "give each class its own id 0..254",
        ),
        (
            "    id: 0\n",
            "    id: 255\n",
            ", line 4: class 'traversable': id=255 is out of range: must be an int 0..254 "
            "(uint8; 255 is left for unknown)",
        ),
        ("    id: 1\n", "    id: -1\n", ", line 8: class 'obstacle': id=-1 is out of range: must be an int 0..254"),
        ("    id: 1\n", "    id: one\n", ", line 8: class 'obstacle': id='one' is out of range: must be an int 0..254"),
        (
            "  - name: traversable\n",
            "  - title: traversable\n",
            ", line 3: unknown key 'title' in classes[0]; allowed: name, id, color, from",
        ),
        ("    id: 1\n", "", ", line 7: classes[1] has no 'id': each class needs name, id and from (color is optional)"),
        (
            "    from: [Road, Pavement]\n",
            "",
            ", line 3: classes[0] has no 'from': each class needs name, id and from (color is optional)",
        ),
        (
            "  - name: obstacle\n    id: 1\n",
            "  - id: 1\n",
            ", line 7: classes[1] has no 'name': each class needs name, id and from (color is optional)",
        ),
        ("name: obstacle", "name: traversable", ", line 7: class name 'traversable' is used twice (first on line 3)"),
        (
            "[Car, Pedestrian,",
            "[Road, Car, Pedestrian,",
            ", line 10: model class 'Road' is mapped to 'obstacle' but already mapped to 'traversable' (line 6); "
            "name each model class once",
        ),
        (
            "[Road, Pavement]",
            "[Road, Pavement, Road]",
            ", line 6: model class 'Road' is mapped to 'traversable' but already mapped to 'traversable' (line 6)",
        ),
        (
            "drop: [Sky]",
            "drop: [Sky, Car]",
            ", line 11: model class 'Car' is dropped but already mapped to 'obstacle' (line 10)",
        ),
        (
            "[128, 64, 128]",
            "[128, 64]",
            ", line 5: class 'traversable': color=[128, 64] must be [R, G, B] with three ints 0..255",
        ),
        (
            "[220, 20, 60]",
            "[220, 20, 600]",
            ", line 9: class 'obstacle': color=[220, 20, 600] must be [R, G, B] with three ints 0..255",
        ),
        ("[220, 20, 60]", "red", ", line 9: class 'obstacle': color='red' must be [R, G, B] with three ints 0..255"),
        (
            " Pole,",
            "",
            ", line 11: model classes not mapped: Pole; add each to a class's 'from' list, or to 'drop' to make it "
            "unknown_label",
        ),
        (
            "drop: [Sky]\n",
            "",
            ", line 2: model classes not mapped: Sky; add each to a class's 'from' list, or to 'drop'",
        ),
        (
            "from: [Road, Pavement]",
            "from: []",
            ", line 6: class 'traversable': from must be a non-empty list of model class names, e.g. [Road, Pavement]",
        ),
        (
            "from: [Road, Pavement]",
            "from: Road",
            ", line 6: class 'traversable': from must be a non-empty list of model class names",
        ),
        (
            "unknown_label: 255",
            "unknown_label: 1",
            ", line 1: unknown_label=1 is also the id of class 'obstacle'; pick a value no class uses (255 is usual)",
        ),
        (
            "unknown_label: 255",
            "unknown_label: 256",
            ", line 1: unknown_label=256 is out of range: must be an int 0..255 (labels are uint8)",
        ),
        (
            "drop: [Sky]",
            "drop: [Sky]\nkeep: [Road]",
            ", line 12: unknown key 'keep' in the remap file; allowed: unknown_label, classes, drop",
        ),
        (
            "drop: [Sky]",
            "drop: [Sky]\ndrop: [Sky]",
            ", line 12: 'drop' appears twice in the remap file (first on line 11)",
        ),
        ("    id: 1\n", "    id: 1\n    id: 2\n", ", line 9: 'id' appears twice in classes[1] (first on line 8)"),
        (
            "[Road, Pavement]",
            "[Road, Pavement",
            ", line 7: not valid YAML: expected ',' or ']', but got ':' (while parsing a flow sequence on line 6)",
        ),
    ],
)
def test_each_error_names_the_line(tmp_path, old, new, expected):
    assert old in BASE
    message = error(tmp_path, BASE.replace(old, new, 1))
    assert message.startswith(expected), message


def test_structural_errors(tmp_path):
    assert (
        error(tmp_path, "drop: [Sky]\n") == ", line 1: the remap file has no 'classes' list (format: "
        "esnet_ros/core/remap.py)"
    )
    assert error(tmp_path, "classes: []\n") == (
        ", line 1: 'classes' must be a non-empty list of {name, id, from} entries"
    )
    assert error(tmp_path, "classes:\n  - traversable\n").startswith(
        ", line 2: classes[0] must be a mapping with the keys name, id, color, from"
    )
    assert error(tmp_path, "- 1\n").startswith(", line 1: the remap file must be a mapping")
    assert error(tmp_path, "") == " is empty; it needs a 'classes' list (format: esnet_ros/core/remap.py)"


def test_unknown_label_of_the_node_clashing_with_an_id(tmp_path):
    text = BASE.replace("unknown_label: 255\n", "")
    message = error(tmp_path, text, unknown_label=0)
    assert message == (
        ": unknown_label=0 (the node's setting; the file sets none) is also the id of class "
        "'traversable'; set another unknown_label, or give the file its own 'unknown_label:'"
    )
    with pytest.raises(ValueError, match=r"unknown_label=300 must be 0..255"):
        load(tmp_path, text, unknown_label=300)


def test_a_missing_file_says_where_the_format_is(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"remap file .*nope.yaml does not exist; see esnet_ros/core/remap.py"):
        load_class_remap(tmp_path / "nope.yaml", camvid())
