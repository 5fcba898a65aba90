"""Label sets: the Cityscapes table from cityscapesscripts, and the custom-dataset YAML."""

import numpy as np
import pytest
from cityscapesscripts.helpers import labels as cs

from esnet_ros.core.labels import CITYSCAPES_CATEGORIES, LabelSet, cityscapes, load_labels_yaml


def test_cityscapes_classes_come_from_cityscapesscripts():
    ls = cityscapes()
    assert ls.num_classes == 19
    assert ls.names[:3] == ("road", "sidewalk", "building")
    assert ls.names[18] == "bicycle"
    for train_id, name in enumerate(ls.names):
        label = cs.name2label[name]
        assert label.trainId == train_id
        assert ls.colors[train_id] == label.color
        assert ls.label_ids[train_id] == label.id
        assert ls.categories[train_id] == label.category
    assert set(ls.categories) == set(CITYSCAPES_CATEGORIES)


def test_cityscapes_palette_values():
    pal = cityscapes().palette()
    assert pal.shape == (256, 3) and pal.dtype == np.uint8
    assert tuple(pal[0]) == (128, 64, 128)  # road
    assert tuple(pal[10]) == (70, 130, 180)  # sky
    assert tuple(pal[13]) == (0, 0, 142)  # car
    assert tuple(pal[255]) == (0, 0, 0)  # ignore draws black


def test_raw_and_train_id_lookups_roundtrip():
    ls = cityscapes()
    raw2train = ls.raw_to_train_lut()
    assert raw2train[7] == 0 and raw2train[26] == 13 and raw2train[0] == 255 and raw2train[9] == 255
    train2raw = ls.train_to_raw_lut()
    assert train2raw[0] == 7 and train2raw[13] == 26
    assert np.array_equal(raw2train[train2raw[:19]], np.arange(19))


def test_meta_roundtrip():
    ls = cityscapes()
    assert LabelSet.from_meta(ls.to_meta()) == ls


def write(tmp_path, text):
    path = tmp_path / "classes.yaml"
    path.write_text(text)
    return path


def test_custom_yaml(tmp_path):
    path = write(
        tmp_path,
        "name: warehouse\nignore_index: 200\nclasses:\n"
        "  - {name: floor, color: [10, 20, 30], id: 5}\n"
        "  - {name: shelf, color: [40, 50, 60]}\n",
    )
    ls = load_labels_yaml(path)
    assert ls.name == "warehouse" and ls.names == ("floor", "shelf") and ls.ignore_index == 200
    assert ls.raw_ids == (5, 1)
    lut = ls.raw_to_train_lut()
    assert lut[5] == 0 and lut[1] == 1 and lut[0] == 200


@pytest.mark.parametrize(
    "text, message",
    [
        ("classes: []\n", "non-empty 'classes' list"),
        ("classes:\n  - {color: [1, 2, 3]}\n", r"classes\[0\] needs a non-empty 'name'"),
        ("classes:\n  - {name: a, color: [1, 2]}\n", r"classes\[0\] \(a\) needs 'color: \[R, G, B\]'"),
        ("classes:\n  - {name: a, color: [1, 2, 300]}\n", "ints 0..255"),
        ("classes:\n  - {name: a, color: [1, 2, 3]}\n  - {name: a, color: [1, 2, 3]}\n", "names must be unique"),
        (
            "classes:\n  - {name: a, color: [1, 2, 3], id: 4}\n  - {name: b, color: [1, 2, 3], id: 4}\n",
            "ids must be unique",
        ),
        ("ignore_index: 0\nclasses:\n  - {name: a, color: [1, 2, 3]}\n", "ignore_index=0 must be"),
        ("classes: [unclosed\n", "not valid YAML"),
    ],
)
def test_custom_yaml_errors_say_what_is_wrong(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        load_labels_yaml(write(tmp_path, text))


def test_missing_yaml(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_labels_yaml(tmp_path / "nope.yaml")
