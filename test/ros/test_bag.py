"""``esnet bag``: recordings built here from synthetic scenes, segmented, and read back message by message.

The output is checked against the engine run directly with the same settings (labels, overlay,
confidence, color), with ``rosbags`` and with an independent reader (``mcap`` + ``mcap-ros2-support``).
Needs rclpy (the pipeline serializes with rclpy, as the node publishes); no DDS traffic.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import yaml
from node_harness import NET_H, NET_W, REFERENCE, REPO

pytestmark = pytest.mark.ros

W, H = 160, 96  # camera frames (network 128x64)
N = 8
IMAGE = "sensor_msgs/msg/Image"


@pytest.fixture(scope="module")
def store():
    from esnet_ros.ros.bag.writer import typestore

    return typestore()


@pytest.fixture(scope="module")
def scenes():
    from esnet_ros.data.synth import label_ids_to_train_ids, scene_pairs

    return [(bgr, label_ids_to_train_ids(ids)) for bgr, ids in scene_pairs(N, seed=3, size=(W, H))]


def stamp_of(i: int) -> int:
    return 1_700_000_000 * 10**9 + i * 100_000_000  # 10 Hz


def write_bag(path, store, frames, storage="mcap", extra=()):
    """``frames``: (topic, msg) pairs written at 10 Hz, plus ``extra`` (topic, type, msg, t) records."""
    from esnet_ros.ros.bag.writer import BagOutput

    out = BagOutput(path, storage=storage)
    for topic, msgtype in sorted({(t, type(m).__msgtype__) for t, m in frames} | {(e[0], e[1]) for e in extra}):
        out.add(topic, msgtype)
    for i, (topic, msg) in enumerate(frames):
        out.write(topic, stamp_of(i), store.serialize_cdr(msg, type(msg).__msgtype__))
    for topic, msgtype, msg, t in extra:
        out.write(topic, t, store.serialize_cdr(msg, msgtype))
    return out.close()


def image_msg(store, array, encoding, i):
    from esnet_ros.ros.bag.record import image_message

    return image_message(store, array, encoding, stamp_of(i))


@pytest.fixture(scope="module", params=["mcap", "sqlite3"])
def scene_bag(request, tmp_path_factory, store, scenes):
    """Images on /camera/image_raw, ground truth on /camera/labels_gt, and a std_msgs/String topic."""
    frames = []
    for i, (bgr, _gt) in enumerate(scenes):
        frames += [("/camera/image_raw", image_msg(store, bgr, "bgr8", i))]
    string = store.types["std_msgs/msg/String"]
    extra = [
        ("/camera/labels_gt", IMAGE, image_msg(store, gt, "mono8", i), stamp_of(i)) for i, (_, gt) in enumerate(scenes)
    ]
    extra += [("/chatter", "std_msgs/msg/String", string("hello"), stamp_of(0))]
    path = tmp_path_factory.mktemp("in") / f"scenes_{request.param}"
    return write_bag(path, store, frames, request.param, extra), request.param


def esnet(*args: str) -> int:
    from esnet_ros.cli import main

    return main(
        [
            "bag",
            *map(str, args),
            "--weights",
            str(REFERENCE),
            "--input-size",
            f"{NET_W}x{NET_H}",
            "--device",
            "cpu",
            "--no-progress",
        ]
    )


def read_bag(path, store):
    from rosbags.rosbag2 import Reader

    msgs: dict[str, list] = {}
    with Reader(path) as reader:
        for conn, t, raw in reader.messages():
            msgs.setdefault(conn.topic, []).append((t, store.deserialize_cdr(raw, conn.msgtype)))
    return msgs


def pixels(msg) -> np.ndarray:
    channels = {"mono8": 1, "rgb8": 3, "bgr8": 3}[msg.encoding]
    a = np.asarray(msg.data, np.uint8).reshape(msg.height, msg.step)[:, : msg.width * channels]
    return (
        a.reshape(msg.height, msg.width, channels).squeeze(2) if channels == 1 else a.reshape(msg.height, msg.width, 3)
    )


def test_output_message_by_message(scene_bag, tmp_path, store, scenes, reference_segmenter):
    path, storage = scene_bag
    out, summary = tmp_path / "seg", tmp_path / "run.json"
    assert (
        esnet(
            path,
            "--output",
            out,
            "--topic",
            "/camera/image_raw",
            "--json",
            summary,
            "--copy-topics",
            "/camera/labels_gt",
            "--overlay-alpha",
            "0.4",
        )
        == 0
    )
    meta = yaml.safe_load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["storage_identifier"] == storage and meta["version"] == 9
    topics = {t["topic_metadata"]["name"]: t for t in meta["topics_with_message_count"]}
    assert {n: t["message_count"] for n, t in topics.items()} == {
        "/esnet/labels": N,
        "/esnet/color": N,
        "/esnet/overlay": N,
        "/esnet/confidence": N,
        "/esnet/stats": N,
        "/camera/labels_gt": N,
    }
    stats_meta = topics["/esnet/stats"]["topic_metadata"]
    assert stats_meta["type"] == "esnet_ros/msg/SegmentationStats"
    rosidl = json.loads((REPO / ".colcon/install/esnet_ros/share/esnet_ros/msg/SegmentationStats.json").read_text())
    assert stats_meta["type_description_hash"] == rosidl["type_hashes"][0]["hash_string"]
    assert "reliability: reliable" in yaml.safe_dump(topics["/esnet/labels"]["topic_metadata"]["offered_qos_profiles"])
    msgs = read_bag(out, store)
    for i, (bgr, gt) in enumerate(scenes):
        ref = reference_segmenter(
            bgr, color_order="bgr", outputs=("labels", "confidence", "color", "overlay"), alpha=0.4
        )
        for name, encoding, expected in (
            ("labels", "mono8", ref.labels),
            ("confidence", "mono8", ref.confidence),
            ("color", "rgb8", ref.color),
            ("overlay", "bgr8", ref.overlay),
        ):
            t, msg = msgs[f"/esnet/{name}"][i]
            assert t == stamp_of(i), name  # the input's log time
            assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == stamp_of(i)
            assert msg.header.frame_id == "camera"
            assert (msg.encoding, msg.width, msg.height) == (encoding, W, H), name
            np.testing.assert_array_equal(pixels(msg), expected, err_msg=f"{name} of frame {i}")
        t, stats = msgs["/esnet/stats"][i]
        assert t == stamp_of(i) and stats.frame_index == i + 1 and stats.rejected_total == 0
        assert (stats.input_width, stats.input_height, stats.network_width, stats.network_height) == (
            W,
            H,
            NET_W,
            NET_H,
        )
        assert stats.class_fraction.sum() == pytest.approx(1.0, abs=1e-4)
        assert stats.class_fraction[0] == pytest.approx(float(np.mean(ref.labels == 0)), abs=1e-6)
        np.testing.assert_array_equal(pixels(msgs["/camera/labels_gt"][i][1]), gt)
    report = json.loads(summary.read_text())
    assert (report["frames_written"], report["rejected_total"], report["interrupted"]) == (N, 0, False)
    assert report["engine"]["network_size"] == [NET_W, NET_H] and report["storage"] == storage
    assert set(report["stage_timings"]) >= {"decode", "preprocess", "inference", "postprocess", "write"}
    assert sum(report["class_share"].values()) == pytest.approx(1.0, abs=1e-3)


def test_independent_mcap_reader(scene_bag, tmp_path, scenes, reference_segmenter):
    """The mcap library decodes our output, our own message type included, from the file's schemas alone."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    path, _storage = scene_bag
    out = tmp_path / "seg"
    assert esnet(path, "--output", out, "--topic", "/camera/image_raw", "--storage", "mcap") == 0
    labels, stats = [], []
    with open(next(out.glob("*.mcap")), "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        summary = reader.get_summary()
        assert {c.topic for c in summary.channels.values()} == {
            f"/esnet/{n}" for n in ("labels", "color", "overlay", "confidence", "stats")
        }
        decoded_messages = reader.iter_decoded_messages(topics=["/esnet/labels", "/esnet/stats"])
        for _schema, channel, message, decoded in decoded_messages:
            (labels if channel.topic == "/esnet/labels" else stats).append((message.log_time, decoded))
    assert [t for t, _ in labels] == [stamp_of(i) for i in range(N)]
    for i, (bgr, _) in enumerate(scenes):
        msg = labels[i][1]
        assert (msg.encoding, msg.width, msg.height, msg.step) == ("mono8", W, H, W)
        got = np.frombuffer(bytes(msg.data), np.uint8).reshape(H, W)
        np.testing.assert_array_equal(got, reference_segmenter(bgr, color_order="bgr", outputs=("labels",)).labels)
        s = stats[i][1]
        assert (s.network_width, s.network_height, s.frame_index) == (NET_W, NET_H, i + 1)
        assert s.header.stamp.nanosec == stamp_of(i) % 10**9


def test_video(scene_bag, tmp_path):
    path, _ = scene_bag
    video = tmp_path / "overlay.avi"
    assert (
        esnet(
            path,
            "--output",
            tmp_path / "seg",
            "--topic",
            "/camera/image_raw",
            "--video",
            video,
            "--video-stream",
            "side_by_side",
        )
        == 0
    )
    cap = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    assert len(frames) == N and frames[0].shape == (H, 2 * W, 3)
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(10.0, abs=0.01)


def test_topic_selection_errors(scene_bag, tmp_path, capsys):
    path, _ = scene_bag
    assert esnet(path, "--output", tmp_path / "a") == 2
    err = capsys.readouterr().err
    assert "2 image topics, choose one with --topic" in err
    assert "/camera/image_raw (sensor_msgs/msg/Image, 8 messages)" in err
    assert "/camera/labels_gt (sensor_msgs/msg/Image, 8 messages)" in err
    assert esnet(path, "--output", tmp_path / "b", "--topic", "/camera/missing") == 2
    assert (
        "--topic /camera/missing: no such topic in the bag; image topics found: /camera/image_raw"
        in capsys.readouterr().err
    )
    assert esnet(path, "--output", tmp_path / "c", "--topic", "/chatter") == 2
    assert "--topic /chatter is a std_msgs/msg/String, not a sensor_msgs/Image" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_not_a_bag_and_empty(tmp_path, store, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert esnet(text, "--output", tmp_path / "o1") == 2
    assert "is not a rosbag2 recording (a .txt file)" in capsys.readouterr().err
    (tmp_path / "folder").mkdir()
    assert esnet(tmp_path / "folder", "--output", tmp_path / "o2") == 2
    assert "no metadata.yaml and no .mcap or .db3 file" in capsys.readouterr().err
    fake = tmp_path / "fake.mcap"
    fake.write_bytes(b"not an mcap file at all")
    assert esnet(fake, "--output", tmp_path / "o3") == 2
    assert "is not an MCAP file (wrong magic bytes)" in capsys.readouterr().err
    empty = write_bag(tmp_path / "empty", store, [], extra=())
    assert esnet(empty, "--output", tmp_path / "o4") == 2
    assert "holds no messages (an empty recording)" in capsys.readouterr().err
    assert esnet(tmp_path / "missing", "--output", tmp_path / "o5") == 2
    assert "does not exist" in capsys.readouterr().err


def test_corrupt_frames_counted_by_cause(tmp_path, store, scenes):
    from esnet_ros.ros.bag.record import image_message

    bgr = scenes[0][0]
    good = [image_message(store, bgr, "bgr8", stamp_of(i)) for i in range(4)]
    short = image_message(store, bgr, "bgr8", 0)
    short.data = short.data[:-10]
    unknown = image_message(store, bgr, "bgr8", 0)
    unknown.encoding = "weird"
    yuv = image_message(store, bgr[:, :, :2], "yuv422", 0)
    frames = [("/cam", m) for m in (good[0], short, good[1], unknown, yuv, good[2])]
    path = write_bag(tmp_path / "corrupt", store, frames, "sqlite3")
    summary = tmp_path / "s.json"
    assert esnet(path, "--output", tmp_path / "seg", "--json", summary) == 0
    report = json.loads(summary.read_text())
    assert report["rejected"] == {"data_size": 1, "unknown_encoding": 1, "unsupported_encoding": 1}
    assert (report["frames_written"], report["rejected_total"]) == (3, 3)
    msgs = read_bag(tmp_path / "seg", store)
    assert [t for t, _ in msgs["/esnet/labels"]] == [stamp_of(0), stamp_of(2), stamp_of(5)]
    assert [s.rejected_total for _, s in msgs["/esnet/stats"]] == [0, 1, 3]


def test_compressed_frames(tmp_path, store, scenes, reference_segmenter):
    compressed = store.types["sensor_msgs/msg/CompressedImage"]
    header = store.types["std_msgs/msg/Header"]
    stamp = store.types["builtin_interfaces/msg/Time"]
    frames = []
    for i, (bgr, _) in enumerate(scenes[:3]):
        data = np.frombuffer(cv2.imencode(".png", bgr)[1].tobytes(), np.uint8)
        frames.append(
            (
                "/cam/compressed",
                compressed(header(stamp(1_700_000_000, i * 100_000_000), "camera"), "bgr8; png compressed bgr8", data),
            )
        )
    jpeg = np.frombuffer(cv2.imencode(".jpg", scenes[0][0])[1].tobytes(), np.uint8)
    frames.append(
        (
            "/cam/compressed",
            compressed(header(stamp(1_700_000_000, 300_000_000), "camera"), "jpeg", jpeg[: len(jpeg) // 2]),
        )
    )
    path = write_bag(tmp_path / "compressed", store, frames, "mcap")
    summary = tmp_path / "s.json"
    assert esnet(path, "--output", tmp_path / "seg", "--json", summary) == 0
    assert json.loads(summary.read_text())["rejected"] == {"compressed_truncated": 1}
    msgs = read_bag(tmp_path / "seg", store)
    assert len(msgs["/esnet/labels"]) == 3
    for i, (bgr, _) in enumerate(scenes[:3]):
        ref = reference_segmenter(bgr, color_order="bgr", outputs=("labels",))
        np.testing.assert_array_equal(pixels(msgs["/esnet/labels"][i][1]), ref.labels)
        assert msgs["/esnet/overlay"][i][1].encoding == "bgr8"


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_truncated_file_frames_before_damage(tmp_path, store, scenes, storage, capsys):
    """A recording cut at 60%: the frames before the cut are segmented and written; the summary says where."""
    big = [cv2.resize(bgr, (320, 192)) for bgr, _ in scenes]  # 184 kB frames: several 1 MiB MCAP chunks
    frames = [("/cam", image_msg(store, big[i % N], "bgr8", i)) for i in range(24)]
    path = write_bag(tmp_path / "cut", store, frames, storage)
    storage_file = next(p for p in path.iterdir() if p.suffix in (".mcap", ".db3"))
    with storage_file.open("r+b") as f:
        f.truncate(int(storage_file.stat().st_size * 0.6))
    summary = tmp_path / "s.json"
    assert esnet(path, "--output", tmp_path / "seg", "--json", summary) == 0
    report = json.loads(summary.read_text())
    assert "damaged or cut short" in report["input_damage"]
    assert f"read {report['frames_written']} messages before it" in report["input_damage"]
    assert 4 <= report["frames_written"] < 24
    msgs = read_bag(tmp_path / "seg", store)
    assert [t for t, _ in msgs["/esnet/labels"]] == [stamp_of(i) for i in range(report["frames_written"])]
    assert "input damaged:" in capsys.readouterr().out


def test_output_refused_then_overwritten(scene_bag, tmp_path, capsys, store):
    path, _ = scene_bag
    out = tmp_path / "seg"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert esnet(path, "--output", out, "--topic", "/camera/image_raw") == 2
    assert f"--output {out} exists; pass --overwrite" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"
    assert esnet(path, "--output", out, "--topic", "/camera/image_raw", "--overwrite", "--outputs", "labels") == 0
    assert not (out / "keep.txt").exists()
    assert list(read_bag(out, store)) == ["/esnet/labels"]
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]


def test_unwritable_output(scene_bag, tmp_path, capsys):
    path, _ = scene_bag
    assert esnet(path, "--output", "/proc/esnet_bag_out", "--topic", "/camera/image_raw") == 2
    assert "cannot create the bag" in capsys.readouterr().err
    assert esnet(path, "--output", tmp_path / "no" / "such" / "out", "--topic", "/camera/image_raw") == 2
    assert "does not exist; create it first" in capsys.readouterr().err


def test_label_pairs_for_evaluation(scene_bag, tmp_path, scenes, reference_segmenter):
    from esnet_ros.ros.bag.record import bag_confusion, label_pairs
    from esnet_ros.training.metrics import ConfusionMatrix

    path, _ = scene_bag
    out = tmp_path / "seg"
    assert (
        esnet(
            path,
            "--output",
            out,
            "--topic",
            "/camera/image_raw",
            "--copy-topics",
            "/camera/labels_gt",
            "--output-resolution",
            "network",
        )
        == 0
    )
    pairs = list(label_pairs(out, "/camera/labels_gt"))
    assert len(pairs) == N
    for (pred, gt), (bgr, truth) in zip(pairs, scenes, strict=True):
        assert pred.shape == gt.shape == (H, W)
        np.testing.assert_array_equal(gt, truth)
        network = reference_segmenter(bgr, color_order="bgr", outputs=("labels",), resolution="network").labels
        np.testing.assert_array_equal(pred, cv2.resize(network, (W, H), interpolation=cv2.INTER_NEAREST))
    labels = reference_segmenter.labels
    confmat, frames = bag_confusion(out, labels, "/camera/labels_gt")
    expected = ConfusionMatrix.for_labels(labels)
    for pred, gt in pairs:
        expected.update(gt, pred)
    assert frames == N and confmat.compute()["miou"] == pytest.approx(expected.compute()["miou"])
    with pytest.raises(ValueError, match="has no topic /camera/nothing"):
        list(label_pairs(out, "/camera/nothing"))


def test_synth_cli_records_a_bag(tmp_path, store):
    from esnet_ros.cli import main

    assert main(["synth", "--bag", str(tmp_path / "rec"), "--val", "2", "--size", f"{W}x{H}", "--storage", "mcap"]) == 0
    msgs = read_bag(tmp_path / "rec", store)
    assert [len(msgs[t]) for t in ("/camera/image_raw", "/camera/labels_gt")] == [2, 2]
    assert msgs["/camera/image_raw"][0][1].header.stamp == msgs["/camera/labels_gt"][0][1].header.stamp


def test_synthetic_recording(tmp_path, store):
    from esnet_ros.ros.bag.record import write_synthetic_bag

    path = write_synthetic_bag(tmp_path / "synth", 3, size=(W, H), storage="sqlite3", rate_hz=5)
    msgs = read_bag(path, store)
    assert [t for t, _ in msgs["/camera/image_raw"]] == [t for t, _ in msgs["/camera/labels_gt"]]
    assert msgs["/camera/image_raw"][1][0] - msgs["/camera/image_raw"][0][0] == 200_000_000
    img, gt = msgs["/camera/image_raw"][0][1], msgs["/camera/labels_gt"][0][1]
    assert (img.encoding, img.width, img.height, gt.encoding) == ("bgr8", W, H, "mono8")
    assert set(np.unique(pixels(gt))) <= set(range(19)) | {255}


def test_ctrl_c_finishes_a_readable_bag(tmp_path, store, scenes):
    """SIGINT mid-run: the process exits within a second, says how many frames it wrote, and the bag reads."""
    frames = [("/cam", image_msg(store, scenes[i % N][0], "bgr8", i)) for i in range(3000)]
    path = write_bag(tmp_path / "long", store, frames, "mcap")
    out = tmp_path / "seg"
    cmd = [
        sys.executable,
        "-m",
        "esnet_ros.cli",
        "bag",
        str(path),
        "--output",
        str(out),
        "--weights",
        str(REFERENCE),
        "--input-size",
        f"{NET_W}x{NET_H}",
        "--device",
        "cpu",
        "--no-progress",
    ]
    log = (tmp_path / "stderr.txt").open("w")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=os.environ.copy())
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".seg.partial-*/seg/*.mcap")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    line = proc.stdout.readline()  # the summary's first line, printed once the bag is closed and renamed
    elapsed = time.monotonic() - sent
    proc.communicate(timeout=30)
    assert proc.returncode == 130, (tmp_path / "stderr.txt").read_text()[-2000:]
    assert elapsed < 1.0, f"took {elapsed:.2f} s to stop and close the bag"
    assert line.startswith("interrupted: wrote "), line
    written = int(line.split()[2])
    assert 0 < written < 3000 and f"of 3000 frames of /cam to {out}" in line
    msgs = read_bag(out, store)
    assert len(msgs["/esnet/labels"]) == len(msgs["/esnet/stats"]) == written
    assert [t for t, _ in msgs["/esnet/labels"]] == [stamp_of(i) for i in range(written)]


def test_evaluate_on_a_recording_equals_evaluate_on_the_same_images(tmp_path):
    """esnet synth --bag -> esnet bag --copy-topics GT -> esnet evaluate --bag scores what esnet evaluate
    scores for the same scenes as a folder (same engine, same defaults)."""
    from esnet_ros.cli import main

    common = ["--val", "3", "--seed", "4", "--size", f"{W}x{H}"]
    engine = ["--weights", str(REFERENCE), "--input-size", f"{NET_W}x{NET_H}", "--device", "cpu"]
    assert main(["synth", "--bag", str(tmp_path / "rec"), *common]) == 0
    assert main(["synth", "--out", str(tmp_path / "folder"), "--train", "0", *common]) == 0
    assert (
        main(
            [
                "bag",
                str(tmp_path / "rec"),
                "--output",
                str(tmp_path / "seg"),
                "--topic",
                "/camera/image_raw",
                "--copy-topics",
                "/camera/labels_gt",
                "--outputs",
                "labels",
                "--no-progress",
                *engine,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "evaluate",
                "--bag",
                str(tmp_path / "seg"),
                "--gt-topic",
                "/camera/labels_gt",
                "--json",
                str(tmp_path / "bag.json"),
                "--weights",
                str(REFERENCE),
            ]
        )
        == 0
    )
    assert main(["evaluate", "--data", str(tmp_path / "folder"), "--json", str(tmp_path / "folder.json"), *engine]) == 0
    from_bag = json.loads((tmp_path / "bag.json").read_text())
    from_folder = json.loads((tmp_path / "folder.json").read_text())
    assert from_bag["num_images"] == from_folder["num_images"] == 3
    assert from_bag["pixels"] == from_folder["pixels"] > 0.9 * 3 * W * H  # labeled pixels (void ones are ignored)
    for key in ("miou", "category_miou", "pixel_accuracy", "per_class_iou"):
        assert from_bag[key] == pytest.approx(from_folder[key], abs=1e-9), key
    with pytest.raises(ValueError, match=r"needs --data DIR \(images and labels\) or --bag DIR"):
        from esnet_ros.cli.evaluate import run

        run(argparse.Namespace(data=None, bag=None))


def test_bag_benchmark_runs_and_reports_its_figures(tmp_path):
    """`esnet bag --bench` runs (how fast is the benchmark's business, not the test's)."""
    from esnet_ros.cli import main

    assert (
        main(
            [
                "bag",
                "--bench",
                "--bench-size",
                f"{W}x{H}",
                "--bench-frames",
                "4",
                "--outputs",
                "labels,stats",
                "--weights",
                str(REFERENCE),
                "--input-size",
                f"{NET_W}x{NET_H}",
                "--device",
                "cpu",
                "--json",
                str(tmp_path / "bench.json"),
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "bench.json").read_text())
    assert (report["camera_size"], report["network_size"], report["frames"]) == (f"{W}x{H}", f"{NET_W}x{NET_H}", 4)
    assert report["model_fps"] > 0 and report["bag_fps"] > 0 and report["recipe_fps"] > 0
    assert report["ratio"] == pytest.approx(report["bag_fps"] / report["model_fps"], rel=0.02)
    # the CPU-time bound: the network's CPU per frame over the whole run's (more than the network alone)
    assert 0 < report["model_cpu_ms_per_frame"] < report["bag_cpu_ms_per_frame"] and report["cores"] >= 1
    assert report["cpu_bound_ratio"] == pytest.approx(
        report["model_cpu_ms_per_frame"] / report["bag_cpu_ms_per_frame"], rel=0.02
    )
