"""Procedural street scenes with exact ground truth, in the Cityscapes folder layout.

``esnet synth --out DIR --train N --val M --seed S [--size 2048x1024]`` writes::

    DIR/leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    DIR/gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png
    DIR/gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png
    DIR/gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_instanceIds.png  (16-bit, id*1000+k)

so the Cityscapes tools and :mod:`esnet_ros.data.datasets` read it unchanged.

The scenes are seen from a pinhole camera 1.2-1.7 m above a flat street: a perspective road with
lane markings (and sometimes a crosswalk), curbs and tiled sidewalks, grass strips, facades with
window grids, tree lines, trees, hedges, street lamps, traffic signs and traffic lights, cars and
buses (rear, front and side faces in perspective), pedestrians and parked bicycles, and now and
then the ego vehicle's hood (Cityscapes' "ego vehicle", ignored in training and evaluation).
Lighting, tint, colors, textures, cast shadows, noise, blur, camera height, focal length and
horizon vary per scene; objects occlude each other in depth order. 13 of the 19 Cityscapes train
classes appear (not wall, fence, truck, train, rider, motorcycle): of trucks and buses, and of
riders and bicycles, the generator draws buses and bicycles, so that the demo model's classes are
told apart by shape and context alone.

Everything is drawn in world units (meters) and projected, so a scene looks the same at any
resolution; only the smallest structures have a minimum size in pixels (poles and traffic light
housings ``width / 64``, signs ``width / 36``, bicycle frames ``width / 128``) and people and
bicycles stay within 18 m, so that they stay learnable at a 256x128 network input.

Python API (no rclpy needed; the ROS synthetic camera uses it)::

    rng = numpy.random.default_rng(seed)
    image, train_ids = render_scene(rng, 1280, 720)                  # RGB uint8 (H,W,3), (H,W) uint8
    image, label_ids = render_scene(rng, 1280, 720, label_ids=True)  # Cityscapes labelIds instead
    for bgr, label_ids in scene_pairs(100, seed=0, size=(1280, 720)):  # e.g. to record a bag
        ...

The same generator state always gives the same scene.

Modules: :mod:`.scene` (classes drawn, camera, canvas), :mod:`.street` (sky, road, sidewalks,
facades), :mod:`.objects` (vehicles, people, bicycles, poles, vegetation), :mod:`.render` (one
scene, finished), :mod:`.writer` (datasets and scene pairs); ``esnet synth`` is :mod:`esnet_ros.cli.synth`.
"""

from esnet_ros.data.synth.render import render_scene, scene_rng
from esnet_ros.data.synth.scene import CLASSES_DRAWN, label_ids_to_train_ids
from esnet_ros.data.synth.writer import TRAIN_CITIES, VAL_CITIES, scene_pairs, scene_paths, write_dataset, write_pairs

__all__ = [
    "render_scene",
    "scene_rng",
    "scene_pairs",
    "write_pairs",
    "write_dataset",
    "scene_paths",
    "label_ids_to_train_ids",
    "CLASSES_DRAWN",
    "TRAIN_CITIES",
    "VAL_CITIES",
]
