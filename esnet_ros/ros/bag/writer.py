"""Writing the output recording the rosbag2 way, with ``rosbags``: a temporary name, renamed when complete.

The bag is written to ``.NAME.partial-PID/NAME`` beside the output path and moved to the output path
only after its storage file and ``metadata.yaml`` are complete, so that a run that fails (a full
disk, an error) leaves no bag that looks complete.  Every topic carries its message definition and
its RIHS01 type hash (our ``esnet_ros/msg/SegmentationStats`` is registered from its ``.msg`` file,
so that MCAP readers such as Foxglove decode it) and the QoS its publisher offered
(:data:`OUTPUT_QOS`: the node's defaults, reliable, keep last 1, volatile).
"""

from __future__ import annotations

import functools
import os
import pathlib
import shutil
from typing import Any, NamedTuple

from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer, WriterError
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from esnet_ros.ros.bag.reader import TopicInfo
from esnet_ros.ros.topics import OUTPUT_TOPICS as NODE_TOPICS

__all__ = [
    "BagOutput",
    "OutputTopic",
    "OUTPUT_TOPICS",
    "OUTPUT_QOS",
    "STORAGES",
    "STATS_TYPE",
    "typestore",
    "stats_msg_path",
]

STATS_TYPE = "esnet_ros/msg/SegmentationStats"
IMAGE_TYPE = "sensor_msgs/msg/Image"


class OutputTopic(NamedTuple):
    """One of the node's outputs in the output bag."""

    topic: str
    msgtype: str


#: output name -> its topic and type: the node's outputs under their default names
OUTPUT_TOPICS = {
    name: OutputTopic(topic, STATS_TYPE if name == "stats" else IMAGE_TYPE) for name, topic in NODE_TOPICS.items()
}
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
_UNSET = QosTime(0, 0)  # rosbag2's "default" duration (the node sets no deadline, lifespan or lease)
OUTPUT_QOS = Qos(
    QosHistory.KEEP_LAST,
    1,
    QosReliability.RELIABLE,
    QosDurability.VOLATILE,
    _UNSET,
    _UNSET,
    QosLiveliness.AUTOMATIC,
    _UNSET,
    False,
)


def stats_msg_path() -> pathlib.Path:
    """``SegmentationStats.msg``: from the installed package's share folder, or the source tree's ``msg/``."""
    candidates = [pathlib.Path(__file__).resolve().parents[3] / "msg"]
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            candidates.append(pathlib.Path(prefix) / "share" / "esnet_ros" / "msg")
    for folder in candidates:
        path = folder / "SegmentationStats.msg"
        if path.is_file():
            return path
    raise FileNotFoundError(
        "SegmentationStats.msg not found in the source tree's msg/ nor in an ament prefix's "
        "share/esnet_ros/msg; source tools/env.sh (or the workspace's setup) first"
    )


@functools.lru_cache(maxsize=1)
def typestore() -> Typestore:
    """The ROS 2 Kilted types plus ours (definitions and RIHS01 hashes equal rosidl's)."""
    store = get_typestore(Stores.ROS2_KILTED)
    store.register(get_types_from_msg(stats_msg_path().read_text(), STATS_TYPE))
    return store


def _check_output(path: pathlib.Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise ValueError(f"--output {path} exists; pass --overwrite to replace it, or choose another path")
    if path.exists() and not path.is_dir():
        raise ValueError(f"--output {path} exists and is a file, not a bag directory; remove it or choose another path")
    parent = path.parent
    if not parent.is_dir():
        raise FileNotFoundError(f"--output {path}: the folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"--output {path}: the folder {parent} is not writable; choose a writable folder")


class _DeclaredTopic(NamedTuple):
    """A topic :meth:`BagOutput.add` accepted, connected when the storage opens."""

    topic: str
    msgtype: str
    qos: tuple
    source: TopicInfo | None  # the input topic it copies (its definition and hash when we have no type)


class BagOutput:
    """The output bag: :meth:`add` topics, :meth:`write` CDR bytes, :meth:`close` renames it into place.

    The storage is opened at the first write and finished by :meth:`finish`, in one thread (sqlite3
    connections belong to the thread that opened them); :meth:`close` and :meth:`abort` may follow in another.
    """

    def __init__(self, path: str | os.PathLike, *, storage: str = "mcap", overwrite: bool = False) -> None:
        if storage not in STORAGES:
            raise ValueError(f"storage={storage!r} must be one of: {', '.join(STORAGES)}")
        self.path = pathlib.Path(path).absolute()
        self.storage = storage
        self.overwrite = overwrite
        _check_output(self.path, overwrite)
        self.staging = self.path.parent / f".{self.path.name}.partial-{os.getpid()}"
        shutil.rmtree(self.staging, ignore_errors=True)
        try:
            self.staging.mkdir()
        except OSError as exc:
            raise ValueError(f"--output {self.path}: cannot create the bag ({exc}); choose a writable folder") from None
        self._topics: list[_DeclaredTopic] = []
        self._writer: Writer | None = None
        self._connections: dict[str, Any] = {}
        self._finished = False
        self.counts: dict[str, int] = {}

    def add(self, topic: str, msgtype: str, qos: tuple = (OUTPUT_QOS,), source: TopicInfo | None = None) -> bool:
        """Declare a topic; a copied input topic of a type we have no definition for is refused (False)."""
        if msgtype not in typestore().types and not (source is not None and source.msgdef and source.digest):
            return False
        self._topics.append(_DeclaredTopic(topic, msgtype, tuple(qos), source))
        self.counts[topic] = 0
        return True

    def _open(self) -> None:
        store = typestore()
        writer = Writer(self.staging / self.path.name, version=9, storage_plugin=STORAGES[self.storage])
        try:
            writer.open()
        except (OSError, WriterError) as exc:
            raise ValueError(f"--output {self.path}: cannot create the bag ({exc}); choose a writable folder") from None
        self._writer = writer
        for declared in self._topics:
            topic, msgtype, qos = declared.topic, declared.msgtype, list(declared.qos)
            if msgtype in store.types:
                conn = writer.add_connection(topic, msgtype, typestore=store, offered_qos_profiles=qos)
            else:
                conn = writer.add_connection(
                    topic,
                    msgtype,
                    msgdef=declared.source.msgdef,
                    rihs01=declared.source.digest,
                    offered_qos_profiles=qos,
                )
            self._connections[topic] = conn

    def write(self, topic: str, timestamp: int, data: bytes | memoryview) -> None:
        if self._writer is None:
            self._open()
        self._writer.write(self._connections[topic], int(timestamp), data)
        self.counts[topic] += 1

    def finish(self) -> None:
        """Complete the storage file and metadata.yaml (in the thread that wrote)."""
        if self._writer is None:
            self._open()
        self._writer.close()
        self._finished = True

    def close(self) -> pathlib.Path:
        """Finish (if not done) and move the bag to its path, replacing an old one."""
        if not self._finished:
            self.finish()
        old = None
        if self.path.exists():
            old = self.staging.with_name(self.staging.name + "-old")
            self.path.rename(old)
        (self.staging / self.path.name).rename(self.path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(self.staging, ignore_errors=True)
        return self.path

    def abort(self) -> None:
        """Remove everything written so far (nothing is left at the output path)."""
        writer, self._writer = self._writer, None
        try:
            if writer is not None and not self._finished:
                writer.abort()
        finally:
            shutil.rmtree(self.staging, ignore_errors=True)
