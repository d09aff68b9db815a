"""Would batching frames across cameras pay on this box? One onnxruntime call over N
frames against N calls over one frame each, for the person detector (YOLOX-nano 416).

    .venv/bin/python tools/batch_bench.py [--models DIR] [--threads 2] [--rounds 20]

The shipped file has batch 1; a copy with a free batch dimension is written to a temporary
folder (as models/face_regions.py does for a free input size) and checked to give the same
detections as N single calls. Prints ms per frame for each batch size. Speed only: figures
taken while other work runs on the box are floors.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

REPO = Path(__file__).resolve().parents[1]


def free_batch(src: Path, dst: Path) -> Path:
    model = onnx.load(str(src))
    for value in (*model.graph.input, *model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    # Reshapes to a constant shape that starts with batch 1: 0 copies the input's batch.
    shapes = {i.name: i for i in model.graph.initializer}
    constants = {n.output[0]: n for n in model.graph.node if n.op_type == "Constant"}
    for node in model.graph.node:
        if node.op_type != "Reshape":
            continue
        target = node.input[1]
        if target in shapes:
            shape = numpy_helper.to_array(shapes[target]).copy()
            if shape.size and shape[0] == 1:
                shape[0] = 0
                shapes[target].CopyFrom(numpy_helper.from_array(shape, target))
        elif target in constants:
            attr = constants[target].attribute[0]
            shape = numpy_helper.to_array(attr.t).copy()
            if shape.size and shape[0] == 1:
                shape[0] = 0
                attr.t.CopyFrom(numpy_helper.from_array(shape, attr.t.name))
    onnx.save(model, str(dst))
    return dst


def session(path: Path, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=REPO / ".." / "shared" / "models")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(15)
    with tempfile.TemporaryDirectory() as tmp:
        path = free_batch(args.models / "yolox_nano.onnx", Path(tmp) / "yolox_batch.onnx")
        sess = session(path, args.threads)
        name = sess.get_inputs()[0].name
        frames = rng.integers(0, 255, (8, 3, 416, 416)).astype(np.float32)
        singles = [sess.run(None, {name: frames[i : i + 1]})[0] for i in range(8)]
        batched = sess.run(None, {name: frames})[0]
        same = all(np.allclose(batched[i], singles[i][0], atol=1e-2) for i in range(8))
        rows = []
        for n in (1, 2, 4, 8):
            times = []
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                sess.run(None, {name: frames[:n]})
                times.append((time.perf_counter() - t0) * 1000 / n)
            rows.append((n, statistics.median(times), min(times)))
    base = rows[0][1]
    print(f"YOLOX-nano 416, CPU, {args.threads} intra-op threads, {args.rounds} rounds")
    print(f"batched output equals single calls: {'yes' if same else 'NO'}")
    print(f"{'batch':>5}  {'ms/frame median':>15}  {'ms/frame best':>13}  {'vs batch 1':>10}")
    for n, med, best in rows:
        print(f"{n:>5}  {med:>15.1f}  {best:>13.1f}  {base / med:>9.2f}x")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
