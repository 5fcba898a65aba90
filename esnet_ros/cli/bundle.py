"""``esnet bundle``: a trained checkpoint as a model to ship, with its provenance in the metadata.

    esnet bundle --weights runs/camvid/best.safetensors --output esnet_ros/weights/esnet_camvid.safetensors \\
        --report runs/camvid_test.json --data-terms "CamVid: research use; cite Brostow et al. 2008"

The tensors are copied unchanged; the metadata keeps everything ``esnet train`` wrote (classes,
palette, input size, the exact training commands, epochs, validation metrics) and adds:

- ``data_terms``: the terms of the data the model was trained on;
- ``evaluations``: the reports of ``esnet evaluate --json`` given with ``--report``, by split;
- ``release``: the source file, the commit of the training code, the commit bundled at.

With ``--int8-calibration-dir TRAIN_IMAGES --int8-data DATASET`` it also writes the int8 companion
``NAME_int8.onnx`` (NNCF, calibrated on the training images, validated on ``--int8-split``), which
``precision=auto`` runs where it costs at most 0.5 mIoU points (:mod:`esnet_ros.training.int8_companion`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib

from esnet_ros.core.checkpoint import load_checkpoint, load_state_dict_file
from esnet_ros.core.metadata import META_KEY
from esnet_ros.training.run_files import source_commit

__all__ = ["add_arguments", "run", "bundle"]

#: the parts of an ``esnet evaluate --json`` report that a bundled model records
REPORT_KEYS = ("split", "num_images", "input_size", "upsample", "miou", "class_avg_acc", "pixel_acc", "per_class_iou")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", required=True, help="the trained checkpoint (.safetensors written by esnet train)")
    parser.add_argument(
        "--output",
        default=None,
        help="the .safetensors file to write (omit it to write only --weights' int8 companion)",
    )
    parser.add_argument(
        "--data-terms", default=None, help="the training data's terms (licence, citation; with --output)"
    )
    parser.add_argument(
        "--report",
        action="append",
        default=[],
        metavar="JSON",
        help="an `esnet evaluate --json` report of these weights (repeatable, one per split)",
    )
    parser.add_argument(
        "--int8-calibration-dir",
        default=None,
        metavar="IMAGES",
        help="also write the int8 companion NAME_int8.onnx, calibrated on these training images",
    )
    parser.add_argument(
        "--int8-data",
        default=None,
        metavar="DATASET",
        help="the dataset whose --int8-split validates the int8 companion (mIoU loss recorded)",
    )
    parser.add_argument("--int8-split", default="val", help="the validation split (default val)")
    parser.add_argument("--int8-images", type=int, default=128, help="calibration images (default 128)")
    parser.add_argument(
        "--training-commit",
        default=None,
        help="commit of the code that trained it (default: the one in the recipe, else none)",
    )


def bundle(
    weights: str | pathlib.Path,
    output: str | pathlib.Path,
    *,
    data_terms: str,
    reports: list[dict] = (),
    training_commit: str | None = None,
) -> dict:
    """Write ``weights``' tensors to ``output`` with release metadata; returns the metadata written."""
    from safetensors.torch import save_file

    weights, output = pathlib.Path(weights), pathlib.Path(output)
    if output.suffix != ".safetensors":
        raise ValueError(f"--output must be a .safetensors file, got {output}")
    _, meta = load_checkpoint(weights, "cpu")  # validates the file and its metadata
    if not meta.recipe.get("command"):
        raise ValueError(f"{weights} records no training command; bundle models trained by `esnet train`")
    state, _ = load_state_dict_file(weights)
    evaluations = {}
    for report in reports:
        missing = [k for k in REPORT_KEYS if k not in report]
        if missing:
            raise ValueError(f"evaluation report lacks {', '.join(missing)}; write it with `esnet evaluate --json`")
        if pathlib.Path(report.get("weights", weights)).resolve() not in (weights.resolve(), output.resolve()):
            raise ValueError(f"the {report['split']} report scores {report['weights']}, not {weights}")
        evaluations[report["split"]] = {k: report[k] for k in REPORT_KEYS}
    out = meta.to_dict()
    out["data_terms"] = data_terms
    out["evaluations"] = {**out.get("evaluations", {}), **evaluations}
    out["release"] = {
        "source": str(weights),
        "training_commit": training_commit or meta.recipe.get("commit"),
        "bundled_at_commit": source_commit(),
        "bundled_on": datetime.date.today().isoformat(),
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(".safetensors.tmp")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp), metadata={META_KEY: json.dumps(out)})
    tmp.replace(output)
    return out


def run(args: argparse.Namespace) -> int:
    if bool(args.int8_calibration_dir) != bool(args.int8_data):
        raise ValueError(
            "--int8-calibration-dir and --int8-data go together: calibration images and the dataset "
            "whose validation split measures what int8 costs"
        )
    if args.output is None and not args.int8_calibration_dir:
        raise ValueError(
            "esnet bundle needs --output MODEL.safetensors (and --data-terms), or --int8-calibration-dir "
            "and --int8-data to write only the int8 companion of --weights"
        )
    if args.output is not None:
        if not args.data_terms:
            raise ValueError("--output needs --data-terms TEXT: the training data's licence and citation")
        reports = [json.loads(pathlib.Path(p).read_text()) for p in args.report]
        meta = bundle(
            args.weights, args.output, data_terms=args.data_terms, reports=reports, training_commit=args.training_commit
        )
        scores = ", ".join(f"{s} mIoU {e['miou'] * 100:.2f}%" for s, e in meta["evaluations"].items())
        print(f"wrote {args.output}: {meta['num_classes']} classes ({meta['dataset']}), {scores or 'no evaluations'}")
    if args.int8_calibration_dir:
        from esnet_ros.training.int8_companion import build_int8_companion, companion_path

        target = args.output or args.weights
        v = build_int8_companion(
            target,
            args.int8_calibration_dir,
            args.int8_data,
            split=args.int8_split,
            calibration_images=args.int8_images,
            progress=True,
        )
        print(
            f"wrote {companion_path(target)}: int8 {args.int8_split} mIoU {v['miou_int8'] * 100:.2f}% vs fp32 "
            f"{v['miou_fp32'] * 100:.2f}% (loss {v['miou_loss_points']:.2f} points)"
        )
    return 0
