"""ms per frame of each upsample mode: the bundled model at 512x256 on the CPU, labels only.

The machine is shared (load ~5 on 2 cores), so each stage's median and minimum over 40 frames
are reported; the modes differ only in the postprocess stage."""
import json, statistics, sys
import cv2
from esnet_ros.inference.segmenter import UPSAMPLE_MODES, Segmenter

seg = Segmenter(None, device="cpu")
scene = cv2.imread(sys.argv[1], cv2.IMREAD_COLOR)
rows = []
for w, h in ((1280, 720), (2048, 1024)):
    img = cv2.resize(scene, (w, h), interpolation=cv2.INTER_LINEAR)
    for mode in UPSAMPLE_MODES:
        for _ in range(5):
            seg(img, "bgr", upsample=mode)
        t = {k: [] for k in ("preprocess", "inference", "postprocess")}
        for _ in range(40):
            for k, v in seg(img, "bgr", upsample=mode).timings_ms.items():
                t[k].append(v)
        row = {"image": f"{w}x{h}", "upsample": mode}
        for k, v in t.items():
            row[k] = [round(statistics.median(v), 1), round(min(v), 1)]
        row["total_min"] = round(sum(min(v) for v in t.values()), 1)
        rows.append(row)
        print(row, flush=True)
json.dump(rows, open("/tmp/e2/upsample_timing.json", "w"), indent=1)
