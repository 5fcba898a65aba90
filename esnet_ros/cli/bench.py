"""``esnet bench``: model-only latency of every backend x precision, and the node end to end (JSON).

Model-only entries (:mod:`esnet_ros.inference.benchmark`) time one backend call after warm-up; eager
fp32 PyTorch is always in the same run, so ``speedup_vs_eager`` is honest.  The node entries
(:mod:`esnet_ros.tooling.node_bench`) publish 1280x720 bgr8 frames to the node at each ``--node-sizes``
network size and time publish -> labels, paired with the same model's timing.  ``--background-load``
keeps one core busy with a CPU hog process throughout.

Example (the numbers in docs/speed.md)::

    esnet bench --device cpu --sizes 1024x512 --calibration-dir synth/leftImg8bit/train \\
        --int8-model esnet_int8.onnx --json bench_cpu.json

On the CPU it first measures the CPU's own limit (:mod:`esnet_ros.inference.cpu_peak`): a large GEMM in
fp32, bf16 (where the CPU has it) and int8 on the same threads, and reports each model entry's achieved
MAC/s as ``fraction_of_peak`` of its precision's (``--no-peaks`` skips it).  A checkpoint with an int8
companion (``NAME_int8.onnx``) gets the entry ``openvino / CPU int8 companion``: what ``precision=auto``
runs where it is picked.

JSON: ``{"machine": {... "isa": {"amx_bf16": true, ...}, "cpu_identity": {"microarchitecture": ...}},
"cpu_peaks": {"fp32": {"gmacs_per_s", "kernel", ...}, "bf16": ..., "int8": ...}, "settings": {...},
"results": [{"kind": "model"|"node", "backend", "variant", "precision", "size", "median_ms", "p90_ms", "min_ms",
"fps", ...}]}``; model entries add ``gmacs``, ``gmacs_per_s`` and ``fraction_of_peak``; node entries add
``model_median_ms`` (paired), ``model_entry_median_ms``, ``ratio``, ``frames`` and ``node_stages_ms``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import pathlib
import sys
from typing import Any

import numpy as np
import torch

from esnet_ros.core.metadata import ModelMeta
from esnet_ros.core.summary import json_safe
from esnet_ros.data.datasets import SegmentationDataset
from esnet_ros.inference.auto_precision import int8_companion
from esnet_ros.inference.benchmark import (
    Entry,
    background_load,
    loadavg,
    machine_info,
    model_entries,
    parse_sizes,
    time_entries,
)
from esnet_ros.inference.cpu_peak import cpu_identity, gemm_peaks, model_macs
from esnet_ros.inference.devices import resolve_device
from esnet_ros.inference.segmenter import Segmenter
from esnet_ros.tooling.node_bench import bench_node
from esnet_ros.training.metrics import ConfusionMatrix

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--weights", default=None, help="checkpoint (default: the bundled CamVid model; `synthetic` names the demo's)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--sizes", default="1024x512,512x256", help="network input sizes WxH, comma-separated")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per model entry (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    parser.add_argument("--num-threads", type=int, default=0, help="CPU threads per backend (default 0: every core)")
    parser.add_argument(
        "--backends",
        default=None,
        help="only these model entries, e.g. 'torch:eager,onnxruntime' (backend[:variant[:precision]])",
    )
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (minutes of compiling)")
    parser.add_argument(
        "--int8-model", default=None, help="also time this int8 .onnx (from esnet export --int8) on ONNX Runtime"
    )
    parser.add_argument(
        "--calibration-dir",
        default=None,
        help="also time OpenVINO int8, quantized with NNCF on these images (e.g. esnet synth output)",
    )
    parser.add_argument(
        "--background-load",
        action="store_true",
        help="keep one core busy with a CPU hog process while measuring (a shared robot CPU)",
    )
    parser.add_argument("--no-node", action="store_true", help="skip the node end-to-end measurement")
    parser.add_argument(
        "--node-backend", default=None, help="the node's backend (default: the fastest model entry the node can run)"
    )
    parser.add_argument("--node-frames", type=int, default=30, help="timed frames through the node (default 30)")
    parser.add_argument("--node-warmup", type=int, default=3, help="untimed frames through the node first")
    parser.add_argument(
        "--node-depth",
        action="store_true",
        help="the node also fuses a registered depth image (1280x720 16UC1) and camera_info: timed "
        "publish -> esnet/points (the cloud, its last output)",
    )
    parser.add_argument(
        "--node-sizes",
        "--node-size",
        dest="node_sizes",
        default=None,
        help="network sizes for the node, comma-separated (default: every one of --sizes)",
    )
    parser.add_argument(
        "--accuracy-data",
        default=None,
        help="also score every model entry on this dataset (e.g. esnet synth output): mIoU and "
        "pixel agreement with eager fp32, through the engine",
    )
    parser.add_argument("--accuracy-split", default="val", help="the --accuracy-data split (default val)")
    parser.add_argument(
        "--no-peaks",
        action="store_true",
        help="skip the CPU's GEMM peaks (fp32, bf16, int8) and each entry's fraction of them",
    )
    parser.add_argument("--json", default=None, help="write the results here")


def _selected(entries: list[Entry], spec: str | None) -> list[Entry]:
    if not spec:
        return entries
    wanted = [s.strip() for s in spec.split(",") if s.strip()]
    out = [
        e
        for e in entries
        if any(
            w == e.backend or w == f"{e.backend}:{e.variant}" or w == f"{e.backend}:{e.variant}:{e.precision}"
            for w in wanted
        )
    ]
    if not out:
        names = ", ".join(f"{e.backend}:{e.variant}:{e.precision}" for e in entries)
        raise ValueError(f"--backends {spec!r} matches nothing here; choose from: {names}")
    return out


def accuracy(
    results: list[dict[str, Any]],
    entries: list[Entry],
    model: torch.nn.Module,
    meta: ModelMeta,
    data: str,
    split: str,
    num_threads: int,
) -> None:
    """Add ``miou`` (points, full label resolution) and ``agreement`` (labels equal to eager fp32's) to
    each model entry in ``results``, running each entry's backend through the engine."""
    dataset = SegmentationDataset(data, split, meta.labels)
    reference: dict[tuple[str, int], np.ndarray] = {}
    for r in results:
        entry = next(
            e for e in entries if (e.backend, e.variant, e.precision) == (r["backend"], r["variant"], r["precision"])
        )
        size = tuple(int(v) for v in r["size"].split("x"))
        seg = Segmenter(
            (model, meta),
            device=r["device"],
            backend=entry.backend,
            precision=entry.precision,
            input_size=size,
            backend_options=entry.options,
            num_threads=num_threads,
        )
        confmat = ConfusionMatrix.for_labels(dataset.labels)
        same = total = 0
        for i in range(len(dataset)):
            image, label = dataset.load(i)
            pred = seg(image, "rgb").labels
            confmat.update(label, pred)
            ref = reference.setdefault((r["size"], i), pred)  # the first entry: eager fp32
            same += int((pred == ref).sum())
            total += pred.size
        seg.release()
        r["miou"] = round(100.0 * confmat.compute()["miou"], 3)
        r["agreement"] = round(same / total, 5)
        r["accuracy_images"] = len(dataset)
        print(
            f"accuracy {r['backend']:<12} {r['variant']:<20} {r['precision']:<5} {r['size']:>9}  "
            f"mIoU {r['miou']:.2f}  agreement with eager fp32 {r['agreement']:.4f}",
            flush=True,
        )


def against_peaks(results: list[dict[str, Any]], peaks: dict[str, Any], macs: dict[tuple[int, int], int]) -> None:
    """Add each model entry's ``gmacs`` (per frame), ``gmacs_per_s`` and ``fraction_of_peak`` (its precision's)."""
    for r in results:
        if r["kind"] != "model":
            continue
        size = tuple(int(v) for v in r["size"].split("x"))
        r["gmacs"] = round(macs[size] / 1e9, 4)
        r["gmacs_per_s"] = round(macs[size] / (r["median_ms"] / 1e3) / 1e9, 2)
        peak = peaks.get(r["precision"], {}).get("gmacs_per_s")
        r["fraction_of_peak"] = round(r["gmacs_per_s"] / peak, 3) if peak else None
        print(
            f"peak  {r['backend']:<12} {r['variant']:<32} {r['precision']:<5} {r['size']:>9}  "
            f"{r['gmacs']:.2f} GMAC/frame  {r['gmacs_per_s']:.1f} GMAC/s"
            + (f" = {100 * r['fraction_of_peak']:.0f}% of the {r['precision']} GEMM peak" if peak else ""),
            flush=True,
        )


def _print_peaks(peaks: dict[str, Any]) -> None:
    for precision in ("fp32", "bf16", "int8"):
        p = peaks.get(precision, {})
        text = (
            f"{p['gmacs_per_s']:.1f} GMAC/s ({p['library']}, {p['kernel']})"
            if "gmacs_per_s" in p
            else f"skipped: {p.get('skipped')}"
        )
        print(f"gemm  {precision:<5} {peaks['gemm']} on {peaks['threads']} threads: {text}", flush=True)


def _print_model(r: dict[str, Any]) -> None:
    print(
        f"model {r['backend']:<12} {r['variant']:<32} {r['precision']:<5} {r['size']:>9}  "
        f"median {r['median_ms']:8.2f} ms  p90 {r['p90_ms']:8.2f}  min {r['min_ms']:8.2f}  "
        f"{r['fps']:8.2f} FPS  cpu {r['cpu_median_ms']:8.2f} ms"
        + (f"  x{r['speedup_vs_eager']} (cpu x{r.get('cpu_speedup_vs_eager')})" if "speedup_vs_eager" in r else "")
        + (f"  [labels out; ending in logits: {r['logits_median_ms']:.2f} ms]" if "logits_median_ms" in r else ""),
        flush=True,
    )


def _print_node(r: dict[str, Any]) -> None:
    print(
        f"node  {r['backend']:<12} {'1280x720 bgr8 -> ' + r.get('timed_until', 'labels'):<32} "
        f"{r['precision']:<5} {r['size']:>9}  "
        f"median {r['median_ms']:8.2f} ms  p90 {r['p90_ms']:8.2f}  min {r['min_ms']:8.2f}  "
        f"model {r['model_median_ms']:.2f} ms  ratio {r['ratio']:.3f}  cpu ratio {r.get('cpu_ratio')}",
        flush=True,
    )
    if r.get("node_stages_ms"):
        print(
            "      in the node: " + "  ".join(f"{k[:-3]} {v:.1f}" for k, v in r["node_stages_ms"].items()) + " ms",
            flush=True,
        )


def _settings(args: argparse.Namespace, weights: pathlib.Path, sizes: list[tuple[int, int]]) -> dict[str, Any]:
    return {
        "weights": str(weights),
        "sizes": [f"{w}x{h}" for w, h in sizes],
        "runs": args.runs,
        "warmup": args.warmup,
        "num_threads": args.num_threads,
        "background_load": args.background_load,
        "command": "esnet " + " ".join(sys.argv[1:]),
    }


def _bench_nodes(args, results, entries, model, meta, weights, device, sizes) -> None:
    for size in parse_sizes(args.node_sizes) if args.node_sizes else sizes:
        r = bench_node(
            results,
            entries,
            model,
            meta,
            str(weights),
            device,
            size,
            node_backend=args.node_backend,
            frames=args.node_frames,
            warmup=args.node_warmup,
            depth=args.node_depth,
        )
        results.append(r)
        _print_node(r)


def run(args: argparse.Namespace) -> int:
    from esnet_ros.core.checkpoint import load_checkpoint, resolve_weights

    device = resolve_device(args.device)
    sizes = parse_sizes(args.sizes)
    if args.runs < 1 or args.warmup < 0:
        raise ValueError(f"--runs={args.runs} must be >= 1 and --warmup={args.warmup} >= 0")
    if args.num_threads < 0:
        raise ValueError(f"--num-threads={args.num_threads} must be >= 0 (0 = every core)")
    weights = resolve_weights(args.weights)
    model, meta = load_checkpoint(weights, "cpu")
    companion = int8_companion(weights)
    choices = model_entries(
        device,
        compile=args.compile,
        int8_model=args.int8_model,
        calibration_dir=args.calibration_dir,
        int8_companion=str(companion) if companion else None,
    )
    entries = _selected(choices, args.backends)
    machine = {**machine_info(device), "cpu_identity": cpu_identity()}
    report: dict[str, Any] = {"machine": machine, "settings": _settings(args, weights, sizes), "results": []}
    results = report["results"]
    with background_load(1) if args.background_load else contextlib.nullcontext():
        if device.type == "cpu" and not args.no_peaks:
            report["cpu_peaks"] = gemm_peaks(args.num_threads)
            _print_peaks(report["cpu_peaks"])
        timing = {"runs": args.runs, "warmup": args.warmup, "num_threads": args.num_threads}
        results += time_entries(entries, model, meta, device, sizes, **timing, report=_print_model)
        if "cpu_peaks" in report:
            against_peaks(results, report["cpu_peaks"], {size: model_macs(model, size) for size in sizes})
        if args.accuracy_data:
            accuracy(results, entries, model, meta, args.accuracy_data, args.accuracy_split, args.num_threads)
        if not args.no_node:
            _bench_nodes(args, results, entries, model, meta, weights, device, sizes)
    machine["loadavg_end"] = loadavg()
    if args.json:
        path = pathlib.Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(json_safe(report), indent=2) + "\n")
        print(f"wrote {path}")
    return 0
