"""``esnet bench``: model-only latency of every backend and precision, and the node end to end.

Model-only entries time one backend call on a ``(1,3,H,W)`` input after warm-up runs
(synchronized on CUDA): median, p90, min and FPS.  The node entry starts the segmentation node
as its own process, publishes 1280x720 bgr8 frames to it over real DDS (reliable QoS, one at a
time) and times publish -> ``esnet/labels`` received; ``ratio`` = node median / model median of
the same backend and size.  The model for the ratio is timed *paired*: one model-only call right
before each node frame, in the bench process while the node idles, so that both medians see the
same machine state (on a shared 2-core machine, back-to-back runs of one model differ by 20% or
more).  The node's own stage timings (from ``esnet/stats``) come with it as ``node_stages_ms``.

Example (the numbers in docs/speed.md)::

    esnet bench --device cpu --sizes 1024x512 --json bench_cpu.json

JSON: ``{"machine": {...}, "settings": {...}, "results": [{"kind": "model"|"node", "backend",
"variant", "precision", "size", "median_ms", "p90_ms", "min_ms", "fps", ...}]}``; node entries
add ``model_median_ms`` (paired), ``model_entry_median_ms``, ``ratio``, ``frames`` and
``node_stages_ms``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import pathlib
import platform
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Iterable

import numpy as np
import torch

from esnet_ros.inference.backends import create_backend, onnxruntime_providers, resolve_device
from esnet_ros.ros.dds import use_large_message_profile
from esnet_ros.core.model import check_input_size
from esnet_ros.core.summary import summarize

__all__ = [
    "Entry",
    "machine_info",
    "model_entries",
    "time_model",
    "time_node",
    "parse_sizes",
    "summarize",
    "add_arguments",
    "run",
]

log = logging.getLogger(__name__)

NODE_IMAGE_SIZE = (1280, 720)


@dataclasses.dataclass(frozen=True)
class Entry:
    """One model-only configuration: how to build its backend, and the node's parameter for it."""

    backend: str  # create_backend name
    variant: str  # what was applied, e.g. "eager", "folded+channels_last"
    precision: str
    options: dict = dataclasses.field(default_factory=dict)
    node_backend: str | None = None  # the node's `backend` value that runs exactly this entry


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """``"1024x512,512x256"`` -> ``[(1024, 512), (512, 256)]`` (multiples of 8)."""
    sizes = []
    for part in str(text).split(","):
        part = part.strip().lower()
        if not part:
            continue
        try:
            w, h = (int(v) for v in part.split("x"))
        except ValueError as exc:
            raise ValueError(f"--sizes entry {part!r} must look like 1024x512 (WIDTHxHEIGHT)") from exc
        check_input_size(w, h, what=f"--sizes {part}")
        sizes.append((w, h))
    if not sizes:
        raise ValueError("--sizes is empty; e.g. --sizes 1024x512,512x256")
    return sizes


def machine_info(device: torch.device) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import onnxruntime as ort

        ort_version = ort.__version__
    except ImportError:
        ort_version = None
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "device": str(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "onnxruntime": ort_version,
        "onnxruntime_providers": list(onnxruntime_providers()),
        "python": platform.python_version(),
        "loadavg_start": _loadavg(),
    }


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def model_entries(device: torch.device, *, compile: bool = False, int8_model: str | None = None) -> list[Entry]:
    """Every backend/precision configuration this machine can run, plain eager first."""
    providers = onnxruntime_providers()
    entries = [Entry("torch", "eager", "fp32", {"fold_bn": False, "channels_last": False, "cuda_graph": False})]
    if device.type == "cpu":
        entries += [
            Entry("torch", "folded", "fp32", {"channels_last": False}),
            Entry("torch", "folded+channels_last", "fp32", {}, node_backend="torch"),
        ]
        if compile:
            entries.append(Entry("torch", "folded+channels_last+compile", "fp32", {"compile": "default"}))
        if providers:
            entries.append(Entry("onnxruntime", "CPU", "fp32", {}, node_backend="onnxruntime"))
        if providers and int8_model:
            entries.append(Entry("onnxruntime", "CPU int8", "int8", {"onnx_path": int8_model}))
        return entries
    entries += [
        Entry("torch", "folded+channels_last", "fp32", {"cuda_graph": False}),
        Entry("torch", "folded+channels_last", "fp16", {"cuda_graph": False}),
        Entry("torch", "folded+channels_last+cuda_graph", "fp16", {}, node_backend="torch"),
    ]
    if compile:
        entries.append(Entry("torch", "folded+channels_last+compile+cuda_graph", "fp16", {"compile": "max-autotune-no-cudagraphs"}))
    if "CUDAExecutionProvider" in providers:
        entries.append(Entry("onnxruntime", "CUDA", "fp16", {}, node_backend="onnxruntime"))
    if "TensorrtExecutionProvider" in providers:
        entries.append(Entry("tensorrt", "TensorRT", "fp16", {}, node_backend="tensorrt"))
    return entries


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], Any], device: torch.device, runs: int, warmup: int) -> tuple[list[float], list[float]]:
    """Wall-clock ms and process CPU ms (all threads) of ``runs`` calls of ``fn`` after ``warmup``
    untimed ones (synchronized).  CPU time is the contention-robust figure on a shared machine."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times, cpu = [], []
    for _ in range(runs):
        c0 = time.process_time()
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    return times, cpu


def _bench_input(backend: Any, size: tuple[int, int], device: torch.device) -> torch.Tensor:
    """A fixed random input, in the backend's own input buffer when it has one (as the engine does)."""
    w, h = size
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0)).to(device)
    buf = backend.input_buffer(tuple(x.shape))
    if buf is not None:  # what the engine does: preprocess straight into the backend's buffer
        buf.copy_(x)
        x = buf
    return x


def time_model(
    entry: Entry,
    model: torch.nn.Module,
    meta: dict[str, Any],
    device: torch.device,
    size: tuple[int, int],
    *,
    runs: int,
    warmup: int,
) -> dict[str, Any]:
    """Model-only timing of one entry at ``size`` (W, H)."""
    w, h = size
    t0 = time.perf_counter()
    backend = create_backend(entry.backend, model, meta, device, entry.precision, size, options=entry.options)
    setup_s = time.perf_counter() - t0
    x = _bench_input(backend, size, device)
    with torch.inference_mode():
        times, cpu = time_call(lambda: backend(x), device, runs, warmup)
    backend.release()
    return {
        "kind": "model",
        "backend": entry.backend,
        "variant": entry.variant,
        "precision": entry.precision,
        "device": str(device),
        "size": f"{w}x{h}",
        **summarize(times),
        "cpu_median_ms": round(float(np.median(cpu)), 3),
        "runs": runs,
        "warmup": warmup,
        "setup_s": round(setup_s, 2),
        "node_backend": entry.node_backend,
    }


# -- node end to end --------------------------------------------------------------------------


def _bench_image(width: int, height: int) -> np.ndarray:
    """A deterministic street-like bgr8 frame (sky, buildings, road bands plus noise)."""
    rng = np.random.default_rng(0)
    img = np.empty((height, width, 3), np.uint8)
    img[: height // 3] = (200, 160, 120)
    img[height // 3 : 2 * height // 3] = (90, 90, 100)
    img[2 * height // 3 :] = (80, 70, 70)
    noise = rng.integers(0, 40, img.shape, dtype=np.uint8)
    return np.ascontiguousarray(img + noise)


#: SegmentationStats fields reported per node entry (``node_stages_ms``)
NODE_STAGES = ("decode_ms", "preprocess_ms", "inference_ms", "postprocess_ms", "publish_ms", "total_ms", "age_ms")


def time_node(
    weights: str,
    backend: str,
    device: str,
    precision: str,
    size: tuple[int, int],
    *,
    frames: int,
    warmup: int,
    timeout_s: float = 180.0,
    image_size: tuple[int, int] = NODE_IMAGE_SIZE,
    paired_model: Callable[[], Any] | None = None,
) -> dict[str, Any]:
    """Start the node as a process; publish ``frames`` bgr8 images one at a time; time publish -> labels.

    ``paired_model``, when given, is the same model-only call, timed right before each frame
    (the node idle), so that the node and the model are measured under the same machine state;
    the entry then holds its median as ``model_median_ms``.
    """
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from esnet_ros.msg import SegmentationStats

    w, h = size
    ns = f"/esnet_bench_{os.getpid()}"
    cmd = [
        sys.executable, "-m", "esnet_ros.ros.node", "--ros-args",
        "-r", f"__ns:={ns}",
        "-p", f"weights:={weights}",
        "-p", f"backend:={backend}",
        "-p", f"device:={device}",
        "-p", f"precision:={precision}",
        "-p", f"input_width:={w}",
        "-p", f"input_height:={h}",
        "-p", "input_qos.reliability:=reliable",
        "--log-level", "warn",
    ]
    use_large_message_profile()  # before our participant and the node's: inherited by the node
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    node_cpu: list[float] = []
    log_lines: list[str] = []
    threading.Thread(target=lambda: log_lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    context = rclpy.Context()
    rclpy.init(context=context)
    node = None
    executor = None
    try:
        node = rclpy.create_node("esnet_bench", namespace=ns, context=context)
        qos = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
        pub = node.create_publisher(Image, "camera/image_raw", qos)
        received: dict[tuple[int, int], float] = {}
        shapes: list[tuple[int, int, str]] = []
        got = threading.Event()

        def on_labels(msg: Image) -> None:
            received[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = time.perf_counter()
            shapes.append((msg.height, msg.width, msg.encoding))
            got.set()

        node.create_subscription(Image, "esnet/labels", on_labels, qos)
        stages: dict[tuple[int, int], dict[str, float]] = {}

        def on_stats(msg: SegmentationStats) -> None:
            stages[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = {f: getattr(msg, f) for f in NODE_STAGES}

        node.create_subscription(SegmentationStats, "esnet/stats", on_stats, 10)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()

        img = _bench_image(*image_size)
        msg = Image()
        msg.height, msg.width = img.shape[:2]
        msg.encoding, msg.is_bigendian, msg.step = "bgr8", 0, img.shape[1] * 3
        msg.data = img.tobytes()
        msg.header.frame_id = "bench_camera"

        deadline = time.monotonic() + timeout_s
        while pub.get_subscription_count() == 0 or node.count_publishers("esnet/labels") == 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the node did not come up:\n" + "".join(log_lines[-30:]))
            time.sleep(0.05)

        def cpu_s() -> float:
            try:
                return _process_cpu(proc.pid)
            except (OSError, ValueError, IndexError):  # not Linux, or the process is gone
                return float("nan")

        def send_one(per_frame_timeout: float, record_cpu: bool = False) -> float | None:
            c0 = cpu_s() if record_cpu else 0.0
            now = time.time_ns()
            msg.header.stamp.sec, msg.header.stamp.nanosec = now // 1_000_000_000, now % 1_000_000_000
            key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
            got.clear()
            t0 = time.perf_counter()
            pub.publish(msg)
            end = time.monotonic() + per_frame_timeout
            while key not in received:
                if proc.poll() is not None:
                    raise RuntimeError("the node exited:\n" + "".join(log_lines[-30:]))
                if not got.wait(max(0.0, end - time.monotonic())) and time.monotonic() >= end:
                    return None
                got.clear()
            if record_cpu:
                node_cpu.append((cpu_s() - c0) * 1e3)
                timed_keys.append(key)
            return (received[key] - t0) * 1e3

        # the first answer includes the node's lazy start-up (export, session, warm-up)
        while send_one(2.0) is None:
            if time.monotonic() > deadline:
                raise RuntimeError("the node never answered:\n" + "".join(log_lines[-30:]))
        for _ in range(warmup):
            send_one(30.0)
        times, lost, timed_keys, paired = [], 0, [], []
        for _ in range(frames):
            if paired_model is not None:
                t0 = time.perf_counter()
                paired_model()
                paired.append((time.perf_counter() - t0) * 1e3)
            t = send_one(30.0, record_cpu=True)
            if t is None:
                lost += 1
            else:
                times.append(t)
        if not times:
            raise RuntimeError("no labels came back from the node")
        height, width, encoding = shapes[-1]
        stats_deadline = time.monotonic() + 2.0  # the stats message follows the labels
        while timed_keys[-1] not in stages and time.monotonic() < stats_deadline:
            time.sleep(0.01)
        per_frame = [stages[k] for k in timed_keys if k in stages]
        return {
            "kind": "node",
            "backend": backend,
            "precision": precision,
            "device": device,
            "size": f"{w}x{h}",
            "image": f"{image_size[0]}x{image_size[1]} bgr8",
            **summarize(times),
            "cpu_median_ms": round(float(np.nanmedian(node_cpu)), 3) if node_cpu else None,
            "frames": len(times),
            "lost": lost,
            "labels_shape": [height, width],
            "labels_encoding": encoding,
            # the node's own per-frame timings (SegmentationStats), medians over the timed frames
            "node_stages_ms": {f: round(float(np.median([st[f] for st in per_frame])), 3) for f in NODE_STAGES}
            if per_frame else None,
            **({"model_median_ms": round(float(np.median(paired)), 3), "model_timing": "paired"} if paired else {}),
        }
    finally:
        if executor is not None:
            executor.shutdown(timeout_sec=1.0)
        if node is not None:
            node.destroy_node()
        context.try_shutdown()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _process_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads), from /proc."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


# -- CLI --------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", default=None, help="checkpoint (default: the bundled demo model)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--sizes", default="1024x512,512x256", help="network input sizes WxH, comma-separated")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per model entry (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    parser.add_argument("--backends", default=None,
                        help="only these model entries, e.g. 'torch:eager,onnxruntime' (backend[:variant])")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (minutes of compiling)")
    parser.add_argument("--int8-model", default=None, help="also time this int8 .onnx (from esnet export --int8)")
    parser.add_argument("--no-node", action="store_true", help="skip the node end-to-end measurement")
    parser.add_argument("--node-backend", default=None,
                        help="the node's backend (default: the fastest model entry the node can run)")
    parser.add_argument("--node-frames", type=int, default=30, help="timed frames through the node (default 30)")
    parser.add_argument("--node-warmup", type=int, default=3, help="untimed frames through the node first")
    parser.add_argument("--node-size", default=None, help="network size for the node (default: the first of --sizes)")
    parser.add_argument("--json", default=None, help="write the results here")


def _selected(entries: list[Entry], spec: str | None) -> list[Entry]:
    if not spec:
        return entries
    wanted = [s.strip() for s in spec.split(",") if s.strip()]
    out = [e for e in entries if any(
        w == e.backend or w == f"{e.backend}:{e.variant}" or w == f"{e.backend}:{e.variant}:{e.precision}" for w in wanted)]
    if not out:
        names = ", ".join(f"{e.backend}:{e.variant}" for e in entries)
        raise ValueError(f"--backends {spec!r} matches nothing here; choose from: {names}")
    return out


def run(args: argparse.Namespace) -> int:
    from esnet_ros.core.checkpoint import load_checkpoint, resolve_weights

    device = resolve_device(args.device)
    sizes = parse_sizes(args.sizes)
    if args.runs < 1 or args.warmup < 0:
        raise ValueError(f"--runs={args.runs} must be >= 1 and --warmup={args.warmup} >= 0")
    weights = resolve_weights(args.weights)
    model, meta = load_checkpoint(weights, "cpu")
    entries = _selected(model_entries(device, compile=args.compile, int8_model=args.int8_model), args.backends)
    report: dict[str, Any] = {
        "machine": machine_info(device),
        "settings": {"weights": str(weights), "sizes": [f"{w}x{h}" for w, h in sizes], "runs": args.runs,
                     "warmup": args.warmup, "command": "esnet " + " ".join(sys.argv[1:])},
        "results": [],
    }
    results = report["results"]
    for size in sizes:
        eager = eager_cpu = None
        for entry in entries:
            r = time_model(entry, model, meta, device, size, runs=args.runs, warmup=args.warmup)
            if entry.variant == "eager" and entry.precision == "fp32":
                eager = r["median_ms"]
            if eager:
                r["speedup_vs_eager"] = round(eager / r["median_ms"], 2)
            if entry.variant == "eager" and entry.precision == "fp32":
                eager_cpu = r["cpu_median_ms"]
            if eager_cpu:
                r["cpu_speedup_vs_eager"] = round(eager_cpu / r["cpu_median_ms"], 2)
            results.append(r)
            print(f"model {r['backend']:<12} {r['variant']:<32} {r['precision']:<5} {r['size']:>9}  "
                  f"median {r['median_ms']:8.2f} ms  p90 {r['p90_ms']:8.2f}  min {r['min_ms']:8.2f}  "
                  f"{r['fps']:8.2f} FPS  cpu {r['cpu_median_ms']:8.2f} ms"
                  + (f"  x{r['speedup_vs_eager']} (cpu x{r.get('cpu_speedup_vs_eager')})" if eager else ""), flush=True)
    if not args.no_node:
        node_size = parse_sizes(args.node_size)[0] if args.node_size else sizes[0]
        size_key = f"{node_size[0]}x{node_size[1]}"
        candidates = [r for r in results if r["kind"] == "model" and r["node_backend"] and r["size"] == size_key]
        if args.node_backend:
            candidates = [r for r in candidates if r["node_backend"] == args.node_backend]
            if not candidates:
                raise ValueError(f"--node-backend {args.node_backend} has no model entry at {size_key}; "
                                 f"include it in --backends and --sizes")
        if not candidates:
            raise ValueError(f"no model entry the node can run at {size_key}; add one to --backends or use --no-node")
        best = min(candidates, key=lambda r: r["median_ms"])
        entry = next(e for e in entries if (e.backend, e.variant, e.precision)
                     == (best["backend"], best["variant"], best["precision"]))
        backend = create_backend(entry.backend, model, meta, device, entry.precision, node_size, options=entry.options)
        x = _bench_input(backend, node_size, device)
        try:
            with torch.inference_mode():
                r = time_node(str(weights), best["node_backend"], str(device), best["precision"], node_size,
                              frames=args.node_frames, warmup=args.node_warmup,
                              paired_model=lambda: (backend(x), _sync(device)))
        finally:
            backend.release()
        r["model_entry_median_ms"] = best["median_ms"]  # the model-only entry above, timed before the node
        r["ratio"] = round(r["median_ms"] / r["model_median_ms"], 3)
        if r.get("cpu_median_ms") and best.get("cpu_median_ms"):
            # CPU time of the node process per frame vs the backend call's: robust to contention
            r["model_cpu_median_ms"] = best["cpu_median_ms"]
            r["cpu_ratio"] = round(r["cpu_median_ms"] / best["cpu_median_ms"], 3)
        results.append(r)
        print(f"node  {r['backend']:<12} {'1280x720 bgr8 -> labels':<32} {r['precision']:<5} {r['size']:>9}  "
              f"median {r['median_ms']:8.2f} ms  p90 {r['p90_ms']:8.2f}  min {r['min_ms']:8.2f}  "
              f"model {r['model_median_ms']:.2f} ms  ratio {r['ratio']:.3f}  cpu ratio {r.get('cpu_ratio')}", flush=True)
        if r.get("node_stages_ms"):
            print("      in the node: " + "  ".join(f"{k[:-3]} {v:.1f}" for k, v in r["node_stages_ms"].items()) + " ms",
                  flush=True)
    report["machine"]["loadavg_end"] = _loadavg()
    if args.json:
        path = pathlib.Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {path}")
    return 0
