"""Reading rosbag2 recordings (MCAP or sqlite3) with ``rosbags``, and recovering damaged ones.

:class:`BagInput` opens a bag directory (``metadata.yaml`` + storage files), a directory holding one
``.mcap``/``.db3`` file, or a single ``.mcap``/``.db3`` file, and yields ``(topic, log time ns,
CDR bytes)``.  A file cut short (a recorder killed, a disk that filled up) cannot be opened by the
indexed readers; it is then read record by record from its start, with the ``mcap`` library's
stream reader for MCAP and through a copy with its page count set to what is on disk for sqlite3,
so that the messages before the damage are still delivered.  :attr:`BagInput.damage` then says
where reading stopped and how many messages came before.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import shutil
import sqlite3
import struct
import tempfile
from collections.abc import Collection, Iterator
from typing import Any, NamedTuple

from mcap.exceptions import McapError
from mcap.records import Channel, Message, Schema
from mcap.stream_reader import StreamReader
from rosbags.rosbag2 import Reader, ReaderError

__all__ = [
    "TopicInfo",
    "BagMessage",
    "BagInput",
    "IMAGE_TYPES",
    "image_topics",
    "select_image_topic",
    "STORAGE_SUFFIXES",
]

log = logging.getLogger(__name__)

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
STORAGE_SUFFIXES = {".mcap": "mcap", ".db3": "sqlite3"}
NOT_A_BAG_HELP = "pass a rosbag2 directory (with metadata.yaml) or a single .mcap or .db3 file"


@dataclasses.dataclass(frozen=True)
class TopicInfo:
    """One topic of the input: its type, message count and what the recorder stored about it."""

    name: str
    msgtype: str
    count: int
    qos: tuple = ()  # rosbags ``Qos`` profiles offered by the recorded publishers
    msgdef: str = ""  # message definition text (MCAP schemas; empty for most sqlite3 bags)
    digest: str = ""  # RIHS01 type hash, when the recorder stored it

    def describe(self) -> str:
        return f"{self.name} ({self.msgtype}, {self.count} messages)"


class BagMessage(NamedTuple):
    """One stored message, as :meth:`BagInput.messages` yields it (unpacks as ``topic, log_time, data``)."""

    topic: str
    log_time: int  # ns, the recorder's receive time
    data: bytes | memoryview  # CDR


def image_topics(topics: dict[str, TopicInfo]) -> list[TopicInfo]:
    return [t for t in topics.values() if t.msgtype in IMAGE_TYPES]


def select_image_topic(topics: dict[str, TopicInfo], wanted: str | None) -> TopicInfo:
    """``wanted``, or the one image topic of the bag; the errors list the image topics found."""
    images = image_topics(topics)
    listing = "; ".join(t.describe() for t in images) or "none"
    if wanted:
        name = wanted if wanted.startswith("/") else "/" + wanted
        if name not in topics:
            raise ValueError(f"--topic {wanted}: no such topic in the bag; image topics found: {listing}")
        info = topics[name]
        if info.msgtype not in IMAGE_TYPES:
            raise ValueError(
                f"--topic {wanted} is a {info.msgtype}, not a sensor_msgs/Image or CompressedImage; "
                f"image topics found: {listing}"
            )
        return info
    if len(images) == 1:
        return images[0]
    if not images:
        others = "; ".join(t.describe() for t in topics.values()) or "none"
        raise ValueError(
            f"the bag has no sensor_msgs/Image or CompressedImage topic (topics: {others}); "
            f"record the camera's image topic"
        )
    raise ValueError(f"the bag has {len(images)} image topics, choose one with --topic: {listing}")


def _storage_path(path: pathlib.Path) -> tuple[pathlib.Path, str]:
    """The storage file of a bag path and its storage id; refuses what is no bag."""
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; {NOT_A_BAG_HELP}")
    if path.is_file():
        storage = STORAGE_SUFFIXES.get(path.suffix)
        if storage is None:
            raise ValueError(
                f"{path} is not a rosbag2 recording (a {path.suffix or 'suffix-less'} file); {NOT_A_BAG_HELP}"
            )
        return path, storage
    files = sorted(p for p in path.iterdir() if p.suffix in STORAGE_SUFFIXES)
    if not files:
        raise ValueError(
            f"{path} is not a rosbag2 recording: it has no metadata.yaml and no .mcap or .db3 file; {NOT_A_BAG_HELP}"
        )
    if len(files) > 1 and not (path / "metadata.yaml").exists():
        raise ValueError(
            f"{path} has {len(files)} storage files but no metadata.yaml; pass one of them: "
            + ", ".join(p.name for p in files)
        )
    return files[0], STORAGE_SUFFIXES[files[0].suffix]


class BagInput:
    """An open rosbag2 recording: :attr:`topics`, :meth:`messages`, and :attr:`damage` after a cut-short read."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = pathlib.Path(path)
        self.file, self.storage = _storage_path(self.path)
        self.damage: str | None = None
        self._reader: Reader | None = None
        self._recovery: _McapRecovery | _SqliteRecovery | None = None
        self._open()
        if not any(t.count for t in self.topics.values()) and self.damage is None:
            self.close()
            raise ValueError(f"{self.path} holds no messages (an empty recording); record some camera frames first")

    def _open(self) -> None:
        target = self.path if (self.path / "metadata.yaml").exists() else self.file
        try:
            reader = Reader(target)
            reader.open()
        except ReaderError as exc:
            text = str(exc)
            if "empty" in text:
                raise ValueError(
                    f"{self.path} is empty (0 bytes of {self.storage}); record some camera frames first"
                ) from None
            if (
                "magic is invalid" in text
                and self.file.stat().st_size >= 8
                and not _has_mcap_magic(self.file)
                and self.storage == "mcap"
            ):
                raise ValueError(f"{self.file} is not an MCAP file (wrong magic bytes); {NOT_A_BAG_HELP}") from None
            log.warning("%s cannot be opened as a whole (%s); reading it record by record", self.file, text)
            self._recovery = _McapRecovery(self.file) if self.storage == "mcap" else _SqliteRecovery(self.file)
            self.topics = self._recovery.topics
            self.damage = self._recovery.damage
            return
        self._reader = reader
        self.topics = {}
        for c in reader.connections:
            old = self.topics.get(c.topic)
            count = c.msgcount + (old.count if old else 0)
            self.topics[c.topic] = TopicInfo(
                name=c.topic,
                msgtype=c.msgtype,
                count=count,
                qos=tuple(c.ext.offered_qos_profiles),
                msgdef=c.msgdef.data or "",
                digest=c.digest or "",
            )

    def messages(self, topics: Collection[str]) -> Iterator[BagMessage]:
        """The messages of ``topics`` in log-time order; stops (and sets :attr:`damage`) at damage."""
        if self._recovery is not None:
            yield from self._recovery.messages(set(topics))
            self.damage = self._recovery.damage
            return
        assert self._reader is not None
        connections = [c for c in self._reader.connections if c.topic in topics]
        done = 0
        try:
            for connection, timestamp, data in self._reader.messages(connections=connections):
                done += 1
                yield BagMessage(connection.topic, timestamp, data)
        except (ReaderError, sqlite3.DatabaseError, OSError) as exc:
            self.damage = f"reading stopped after {done} messages: {exc}"

    def log_times(self, topic: str, limit: int) -> list[int]:
        """The log times of ``topic``'s first ``limit`` messages (for its frame rate)."""
        times: list[int] = []
        messages = self.messages({topic})
        for message in messages:
            times.append(message.log_time)
            if len(times) >= limit:
                break
        messages.close()
        return times

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._recovery is not None:
            self._recovery.close()
            self._recovery = None

    def __enter__(self) -> BagInput:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _has_mcap_magic(path: pathlib.Path) -> bool:
    with path.open("rb") as f:
        return f.read(8) == b"\x89MCAP0\r\n"


class _McapRecovery:
    """An MCAP file without its summary (cut short): records read in order until the damage."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self.size = path.stat().st_size
        self.damage: str | None = None
        self.topics: dict[str, TopicInfo] = {}
        self._channels: dict[int, str] = {}  # channel id -> topic
        counts: dict[str, int] = {}
        for message in self._scan(None):
            counts[message.topic] = counts.get(message.topic, 0) + 1
        self.topics = {name: dataclasses.replace(info, count=counts.get(name, 0)) for name, info in self.topics.items()}

    def _scan(self, topics: set[str] | None) -> Iterator[BagMessage]:
        schemas: dict[int, Schema] = {}
        done = 0
        with self.path.open("rb") as f:
            try:
                for record in StreamReader(f, skip_magic=False).records:
                    if isinstance(record, Schema):
                        schemas[record.id] = record
                    elif isinstance(record, Channel):
                        schema = schemas.get(record.schema_id)
                        msgtype = schema.name if schema else ""
                        self._channels[record.id] = record.topic
                        if record.topic not in self.topics:
                            msgdef = schema.data.decode("utf-8", "replace") if schema else ""
                            self.topics[record.topic] = TopicInfo(
                                name=record.topic, msgtype=msgtype, count=0, msgdef=msgdef
                            )
                    elif isinstance(record, Message):
                        topic = self._channels.get(record.channel_id, "")
                        done += 1
                        if topics is None or topic in topics:
                            yield BagMessage(topic, record.log_time, record.data)
            except (McapError, ValueError, EOFError, OSError, struct.error) as exc:  # the damage ends the read
                self.damage = (
                    f"the MCAP file is damaged or cut short at byte {f.tell()} of {self.size} "
                    f"({type(exc).__name__}: {exc or 'end of file'}); read {done} messages before it"
                )

    def messages(self, topics: set[str]) -> Iterator[BagMessage]:
        yield from self._scan(topics)

    def close(self) -> None:
        pass


class _SqliteRecovery:
    """A sqlite3 bag cut short: a copy whose header's page count matches the file, read row by row."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self.damage: str | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="esnet-bag-recover-")
        copy = pathlib.Path(self._tmp.name) / path.name
        shutil.copyfile(path, copy)
        with copy.open("r+b") as f:
            header = f.read(100)
            if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
                self.close()
                raise ValueError(
                    f"{path} is not a sqlite3 database (or is cut short before its header); {NOT_A_BAG_HELP}"
                )
            page_size = struct.unpack(">H", header[16:18])[0]
            page_size = 65536 if page_size == 1 else page_size
            pages = copy.stat().st_size // page_size
            f.seek(28)
            f.write(struct.pack(">I", pages))
            f.truncate(pages * page_size)
        self._db = sqlite3.connect(f"file:{copy}?mode=ro", uri=True, check_same_thread=False)
        try:
            rows = self._db.execute("SELECT id, name, type FROM topics").fetchall()
        except sqlite3.DatabaseError as exc:
            self.close()
            raise ValueError(f"{path} is damaged beyond its topic table ({exc}); nothing can be read from it") from None
        self._names = {tid: name for tid, name, _ in rows}
        counts = {tid: 0 for tid, _, _ in rows}
        for _, tid, _ in self._rows("id, topic_id, 0"):
            counts[tid] = counts.get(tid, 0) + 1
        self.topics = {
            name: TopicInfo(name=name, msgtype=msgtype, count=counts.get(tid, 0)) for tid, name, msgtype in rows
        }

    def _rows(self, columns: str) -> Iterator[tuple]:
        last, done = 0, 0
        while True:
            try:
                row = self._db.execute(
                    f"SELECT {columns} FROM messages WHERE id > ? ORDER BY id LIMIT 1", (last,)
                ).fetchone()
            except sqlite3.DatabaseError as exc:
                self.damage = (
                    f"the sqlite3 file is damaged or cut short after message {done} ({exc}); "
                    f"read {done} messages before it"
                )
                return
            if row is None:
                return
            last, done = row[0], done + 1
            yield row

    def messages(self, topics: set[str]) -> Iterator[BagMessage]:
        for _, tid, timestamp, data in self._rows("id, topic_id, timestamp, data"):
            name = self._names.get(tid, "")
            if name in topics:
                yield BagMessage(name, int(timestamp), bytes(data))

    def close(self) -> None:
        db = getattr(self, "_db", None)
        if db is not None:
            db.close()
            self._db = None
        self._tmp.cleanup()
