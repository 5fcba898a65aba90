"""esnet train: loss goes down, run files, resume, two stages, DDP on 2 gloo processes, bad input."""

from __future__ import annotations

import csv
import os
import pathlib
import signal
import socket
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import save_file

from esnet_ros import cli
from esnet_ros.cli.train import get_args_parser
from esnet_ros.core.checkpoint import load_checkpoint
from esnet_ros.core.labels import cityscapes
from esnet_ros.core.model import ESNet
from esnet_ros.data.datasets import SegmentationDataset
from esnet_ros.data.synth import write_dataset
from esnet_ros.training.run_files import RESUME_FORMAT, load_resume
from esnet_ros.training.train import main

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    write_dataset(root, train=8, val=3, seed=0, size=(64, 32), progress=False)
    return root


def _args(data, out, *extra):
    return get_args_parser().parse_args(
        [
            "--data",
            str(data),
            "--output-dir",
            str(out),
            "--input-size",
            "64x32",
            "--batch-size",
            "4",
            "--workers",
            "0",
            "--threads",
            "1",
            "--cache",
            *extra,
        ]
    )


def _rows(out):
    with (out / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def test_loss_goes_down_and_run_files(data, tmp_path):
    out = tmp_path / "run"
    best = main(_args(data, out, "--epochs", "6", "--lr", "5e-3", "--class-weights", "none", "--batch-size", "2"))
    rows = _rows(out)
    assert [int(r["epoch"]) for r in rows] == list(range(6))
    losses = [float(r["train_loss"]) for r in rows]
    assert losses[-1] < 0.8 * losses[0], losses
    assert all(r["val_miou"] for r in rows)
    # files of the run
    for name in ("args.yaml", "checkpoint.pth", "best.safetensors", "last.safetensors", "training_curve.png"):
        assert (out / name).is_file(), name
    assert list((out / "tb").glob("events.out.tfevents.*"))
    saved = yaml.safe_load((out / "args.yaml").read_text())
    assert saved["epochs"] == 6 and saved["lr"] == 5e-3 and saved["input_size"] == "64x32"
    # the best model carries the full metadata: classes, input size, recipe with the command, metrics
    _model, meta = load_checkpoint(out / "best.safetensors")
    assert meta.class_names == list(cityscapes().names)
    assert list(meta.input_size) == [64, 32]
    assert meta.normalization.scale == pytest.approx(1 / 255)
    assert meta.recipe["optimizer"] == {
        "name": "Adam",
        "lr": 5e-3,
        "betas": [0.9, 0.999],
        "eps": 1e-8,
        "weight_decay": 1e-4,
    }
    assert meta.recipe["schedule"]["power"] == 0.9
    assert "--input-size 64x32" in meta.recipe["command"]
    assert meta.recipe["class_weights"]["spec"] == "none"
    best_row = max(rows, key=lambda r: float(r["val_miou"]))
    assert meta.metrics["miou"] == pytest.approx(float(best_row["val_miou"]), abs=1e-4)
    assert best["miou"] == meta.metrics["miou"]
    assert set(meta.metrics["per_class_iou"]) == set(cityscapes().names)


def test_resume_restores_model_optimizer_scheduler_epoch(data, tmp_path):
    out = tmp_path / "run"
    main(_args(data, out, "--epochs", "2"))
    state = torch.load(out / "checkpoint.pth", weights_only=True)
    assert state["format"] == RESUME_FORMAT and state["epoch"] == 2 and state["stage"] == "full"
    assert state["scheduler"]["last_epoch"] == 2 * 2  # 8 images / batch 4 = 2 iterations per epoch
    assert state["optimizer"]["state"]  # Adam moments saved
    # continue the same run to 3 epochs: only epoch 2 runs, from the saved weights and moments
    main(_args(data, out, "--epochs", "3", "--resume", str(out / "checkpoint.pth")))
    rows = _rows(out)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    state3 = torch.load(out / "checkpoint.pth", weights_only=True)
    assert state3["epoch"] == 3 and state3["scheduler"]["last_epoch"] == 3 * 2
    step = state3["optimizer"]["state"][0]["step"]
    assert float(step) == 3 * 2  # Adam's step count continued rather than restarted
    commands = state3["meta"]["recipe"]["commands"]
    assert len(commands) == 2 and "--epochs 2" in commands[0] and "--resume" in commands[1]
    # resuming a finished run trains nothing more
    main(_args(data, out, "--epochs", "3", "--resume", str(out / "checkpoint.pth")))
    assert len(_rows(out)) == 3


def test_resume_refuses_other_architectures_and_files(data, tmp_path):
    other = tmp_path / "erfnet.pth"
    torch.save({"format": RESUME_FORMAT, "arch": "erfnet", "arch_version": 1, "num_classes": 19, "model": {}}, other)
    with pytest.raises(ValueError, match=r"architecture 'erfnet' v1, but this run trains 'esnet' v1"):
        load_resume(other, 19)
    classes = tmp_path / "c20.pth"
    torch.save({"format": RESUME_FORMAT, "arch": "esnet", "arch_version": 1, "num_classes": 20}, classes)
    with pytest.raises(ValueError, match="has 20 classes but this dataset has 19"):
        load_resume(classes, 19)
    bare = tmp_path / "bare.pth"
    torch.save({"encoder.initial_block.conv.weight": torch.zeros(1)}, bare)
    with pytest.raises(ValueError, match="not an esnet train checkpoint"):
        load_resume(bare, 19)
    weights = tmp_path / "w.safetensors"
    save_file({"decoder.output_conv.weight": torch.zeros(16, 19, 2, 2)}, str(weights))
    with pytest.raises(
        ValueError, match=r"not an esnet train checkpoint.*\(.safetensors files hold inference weights only\)"
    ):
        load_resume(weights, 19)
    with pytest.raises(FileNotFoundError, match=r"OUTPUT_DIR/checkpoint.pth"):
        load_resume(tmp_path / "missing.pth", 19)
    # and through the CLI: a clear message, exit code 2
    assert (
        cli.main(
            [
                "train",
                "--data",
                str(data),
                "--output-dir",
                str(tmp_path / "o"),
                "--input-size",
                "64x32",
                "--workers",
                "0",
                "--resume",
                str(other),
            ]
        )
        == 2
    )


def test_init_weights_fine_tunes_with_a_fresh_schedule_and_keeps_the_history(data, tmp_path):
    first = tmp_path / "first"
    main(_args(data, first, "--epochs", "1"))
    start, _ = load_checkpoint(first / "last.safetensors")
    out = tmp_path / "tuned"
    main(_args(data, out, "--epochs", "1", "--lr", "1e-12", "--init-weights", str(first / "last.safetensors")))
    tuned, meta = load_checkpoint(out / "last.safetensors")
    # a vanishing lr: the weights are the initial ones (only BN running statistics move in train mode)
    for (name, a), b in zip(start.named_parameters(), tuned.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-9, msg=name)
    fresh = torch.nn.utils.parameters_to_vector(ESNet(19).parameters())
    assert (fresh - torch.nn.utils.parameters_to_vector(tuned.parameters())).abs().max() > 0.01
    state = torch.load(out / "checkpoint.pth", weights_only=True)
    assert state["epoch"] == 1 and float(state["optimizer"]["state"][0]["step"]) == 2  # a new optimizer
    commands = meta.recipe["commands"]
    assert len(commands) == 2 and "--init-weights" not in commands[0] and "--init-weights" in commands[1]
    with pytest.raises(ValueError, match="--init-weights and --resume both set"):
        main(
            _args(
                data,
                tmp_path / "both",
                "--init-weights",
                str(first / "last.safetensors"),
                "--resume",
                str(first / "checkpoint.pth"),
            )
        )
    c20 = tmp_path / "c20.safetensors"
    save_file(
        {
            "decoder.output_conv.weight": torch.zeros(16, 20, 2, 2),
            "encoder.initial_block.conv.weight": torch.zeros(13, 3, 3, 3),
        },
        str(c20),
    )
    with pytest.raises(
        ValueError, match="this checkpoint has 20 classes and no metadata, so its class names are unknown"
    ):
        main(_args(data, tmp_path / "c20", "--init-weights", str(c20)))


def test_crop_training(data, tmp_path):
    out = tmp_path / "run"
    main(_args(data, out, "--epochs", "1", "--crop-size", "32x16"))
    _, meta = load_checkpoint(out / "best.safetensors")
    assert meta.recipe["augmentation"]["crop_size"] == [32, 16]
    assert list(meta.input_size) == [64, 32]  # inference runs on whole images at the input size
    with pytest.raises(ValueError, match="--crop-size 128x64 must fit in --input-size 64x32"):
        main(_args(data, tmp_path / "bad", "--crop-size", "128x64"))


def test_two_stage_training(data, tmp_path):
    out = tmp_path / "run"
    main(_args(data, out, "--encoder-epochs", "1", "--epochs", "1"))
    rows = _rows(out)
    assert [(r["epoch"], r["stage"]) for r in rows] == [("0", "encoder"), ("1", "full")]
    assert rows[0]["val_miou"] == ""  # the encoder stage is not validated (no decoder output)
    assert rows[1]["val_miou"]
    _, meta = load_checkpoint(out / "best.safetensors")  # the 1x1 encoder head is not in the weights
    assert meta.recipe["encoder_epochs"] == 1


def test_bad_arguments(data, tmp_path, capsys):
    base = ["train", "--data", str(data), "--output-dir", str(tmp_path / "o"), "--workers", "0"]
    assert cli.main(base + ["--input-size", "100x50"]) == 2
    assert "must be a positive multiple of 8" in capsys.readouterr().err
    assert cli.main(base + ["--input-size", "64x32", "--class-weights", "1,2"]) == 2
    assert "has 2 values but the dataset has 19 classes" in capsys.readouterr().err
    assert cli.main(["train", "--data", str(tmp_path / "none"), "--output-dir", str(tmp_path / "o")]) == 2
    assert "does not exist; expected either the Cityscapes layout" in capsys.readouterr().err


def test_ddp_two_processes_gloo(data, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(port),
        "-m",
        "esnet_ros.cli",
        "train",
        "--data",
        str(data),
        "--output-dir",
        str(out),
        "--input-size",
        "64x32",
        "--batch-size",
        "2",
        "--epochs",
        "2",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--cache",
    ]
    # own session: on a timeout the whole group (torchrun and both workers) is killed, no orphans
    proc = subprocess.Popen(
        cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        output, _ = proc.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail("torchrun with 2 gloo processes did not finish in 150 s:\n" + output[-3000:])
    assert proc.returncode == 0, output[-3000:]
    rows = _rows(out)
    assert [int(r["epoch"]) for r in rows] == [0, 1]  # written once (rank 0 only)
    state = torch.load(out / "checkpoint.pth", weights_only=True)
    # 8 images over 2 processes with batch 2: 2 iterations per epoch in each process
    assert state["scheduler"]["last_epoch"] == 2 * 2
    assert state["meta"]["recipe"]["world_size"] == 2
    # the validation confusion matrix was summed over both processes: every labeled val pixel counted once
    val = SegmentationDataset(data, "val", cityscapes())
    labeled = sum(int((val.load(i)[1] != 255).sum()) for i in range(len(val)))
    assert state["meta"]["metrics"]["pixels"] == labeled


def test_bf16_autocast_channels_last_on_cpu(data, tmp_path):
    out = tmp_path / "bf16"
    main(_args(data, out, "--epochs", "6", "--lr", "5e-3", "--class-weights", "none", "--batch-size", "2", "--bf16"))
    losses = [float(r["train_loss"]) for r in _rows(out)]
    assert losses[-1] < 0.8 * losses[0], losses
    model, meta = load_checkpoint(out / "best.safetensors")
    assert meta.recipe["autocast"] == "bfloat16"
    # the weights stay float32 and are saved in the standard layout, whatever the training layout was
    weight = next(v for v in model.state_dict().values() if v.dim() == 4)
    assert weight.dtype == torch.float32 and weight.is_contiguous()
    with pytest.raises(ValueError, match="--bf16 and --no-amp both set"):
        main(_args(data, tmp_path / "bad", "--bf16", "--no-amp"))
