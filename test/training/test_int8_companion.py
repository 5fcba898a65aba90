"""esnet bundle's int8 companion: NNCF-quantized on training images, validated on the val split."""

from __future__ import annotations

import pytest
from camvid_fixture import ROAD, camvid_model, write_camvid

from esnet_ros.cli import main as cli_main
from esnet_ros.inference import devices
from esnet_ros.inference.onnx_export import read_onnx_metadata
from esnet_ros.training.int8_companion import companion_path

pytestmark = pytest.mark.skipif(not devices.openvino_version(), reason="OpenVINO (and NNCF) are not installed")


def test_bundle_writes_a_validated_int8_companion(tmp_path, capsys):
    pytest.importorskip("nncf")
    data = write_camvid(tmp_path / "CamVid")
    weights = camvid_model(tmp_path / "road.safetensors", constant=ROAD)  # road everywhere, in fp32 and int8
    assert (
        cli_main(
            [
                "bundle",
                "--weights",
                str(weights),
                "--int8-calibration-dir",
                str(data / "train"),
                "--int8-data",
                str(data),
                "--int8-images",
                "3",
            ]
        )
        == 0
    )
    out = companion_path(weights)
    assert out == tmp_path / "road_int8.onnx" and out.is_file()
    meta = read_onnx_metadata(out)
    assert (meta.onnx_precision, meta.int8_calibration["quantizer"], meta.int8_calibration["images"]) == (
        "int8",
        "nncf",
        3,
    )
    v = meta.int8_validation
    # ground truth per image: 368 sky, 368 building, 96 car, 640 road of 1472 valid pixels; road predicted
    # everywhere gives IoU 640/1472 for road and 0 for the 3 other classes present
    expected = 640 / 1472 / 4
    assert (v["split"], v["images"], v["input_size"]) == ("val", 2, [48, 32])
    assert v["miou_fp32"] == pytest.approx(expected, abs=1e-6) and v["miou_int8"] == pytest.approx(expected, abs=1e-6)
    assert v["miou_loss_points"] == 0.0
    assert (
        f"wrote {out}: int8 val mIoU {100 * expected:.2f}% vs fp32 {100 * expected:.2f}% (loss 0.00 points)"
        in capsys.readouterr().out
    )


def test_bundle_refuses_half_an_int8_request(tmp_path, capsys):
    assert cli_main(["bundle", "--weights", "w.safetensors", "--int8-calibration-dir", str(tmp_path)]) != 0
    assert "esnet bundle: error: --int8-calibration-dir and --int8-data go together" in capsys.readouterr().err
    assert cli_main(["bundle", "--weights", "w.safetensors"]) != 0
    assert "needs --output MODEL.safetensors (and --data-terms), or --int8-calibration-dir" in capsys.readouterr().err
