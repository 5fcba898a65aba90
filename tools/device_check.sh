#!/usr/bin/env bash
# The GPU checks in one go, for a fresh CUDA machine that has torch, onnxruntime(-gpu), opencv and
# safetensors but no ROS (the device machine of docs/speed.md; under 8 minutes there):
#
#   1. the CUDA-marked tests of the core and the engine (test/core, test/inference; ROS tests skip),
#   2. esnet bench --device cuda: model-only fp32, fp16 (torch eager, folded, CUDA graphs), ONNX Runtime
#      CUDA and TensorRT where their execution providers are present; TensorRT engines are cached under
#      $ESNET_ROS_CACHE/trt/<gpu>-sm<cc>-trt<version>-<precision>-<WxH>/ (a second run reuses them).
#
# Usage: tools/device_check.sh [OUT_DIR]   (default $OUT, else ./device_check_out)
# Writes OUT_DIR/pytest_cuda.txt, OUT_DIR/junit_cuda.xml, OUT_DIR/bench_cuda.json, OUT_DIR/summary.json.
# Python packages the machine lacks (pytest, pyyaml, cityscapesscripts, tqdm) can come from a wheel
# folder: WHEELHOUSE=/path/to/wheels tools/device_check.sh (installed with pip --no-index, nothing fetched).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-device_check_out}}"
mkdir -p "$OUT_DIR"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export ESNET_ROS_CACHE="${ESNET_ROS_CACHE:-$OUT_DIR/cache}"
PY="${PYTHON:-python3}"

if [[ -n "${WHEELHOUSE:-}" ]]; then
    "$PY" -m pip install -q --no-index --find-links "$WHEELHOUSE" pytest pyyaml cityscapesscripts tqdm || true
fi
missing=$("$PY" - <<'PY'
import importlib.util
need = ["torch", "numpy", "cv2", "safetensors", "onnxruntime", "yaml", "cityscapesscripts", "pytest"]
print(" ".join(m for m in need if importlib.util.find_spec(m) is None))
PY
)
if [[ -n "$missing" ]]; then
    echo "device_check: missing Python modules: $missing (set WHEELHOUSE=DIR with their wheels)" >&2
fi
"$PY" -c "import torch, sys; ok = torch.cuda.is_available(); print('cuda', ok, torch.version.cuda, \
torch.cuda.get_device_name(0) if ok else '-'); sys.exit(0 if ok else 3)" || {
    echo "device_check: torch sees no CUDA device; nothing to check" >&2; exit 3; }

tests_rc=0
if [[ " $missing " != *" pytest "* ]]; then
    timeout 300 "$PY" -m pytest -q -m cuda -p no:cacheprovider test/core test/inference \
        --junitxml "$OUT_DIR/junit_cuda.xml" 2>&1 | tee "$OUT_DIR/pytest_cuda.txt"
    tests_rc=${PIPESTATUS[0]}
else
    tests_rc=4
fi

timeout 300 "$PY" -m esnet_ros.cli bench --device cuda --sizes 1024x512,512x256 --runs 50 --warmup 10 \
    --no-node --json "$OUT_DIR/bench_cuda.json" 2>&1 | tee "$OUT_DIR/bench_cuda.txt"
bench_rc=${PIPESTATUS[0]}

"$PY" - "$OUT_DIR" "$tests_rc" "$bench_rc" <<'PY'
import json, pathlib, sys
out, tests_rc, bench_rc = pathlib.Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
bench = json.loads((out / "bench_cuda.json").read_text()) if (out / "bench_cuda.json").exists() else {}
summary = {"tests_exit_code": tests_rc, "bench_exit_code": bench_rc, "gpu": bench.get("machine", {}).get("gpu"),
           "results": [{k: r.get(k) for k in ("backend", "variant", "precision", "size", "median_ms", "fps")}
                       for r in bench.get("results", [])]}
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print(json.dumps(summary, indent=2))
PY
exit $(( tests_rc != 0 || bench_rc != 0 ))
