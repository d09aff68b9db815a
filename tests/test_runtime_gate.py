"""`models.concurrent_runs`: at most that many model runs at once in a process, across every
model and camera thread (the runs queue instead of sharing the cores among them all)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from ringwatch.models.runtime import OnnxModel, RuntimeOptions, run_gate


def test_one_gate_per_count_shared_by_every_model() -> None:
    assert run_gate(0) is None
    gate = run_gate(1)
    assert gate is not None and run_gate(1) is gate and run_gate(2) is not gate


def test_a_run_waits_while_the_gate_is_taken(models_dir: Path) -> None:
    model = OnnxModel(models_dir / "yolox_nano.onnx", RuntimeOptions("cpu", 1, 1))
    tensor = np.zeros((1, 3, 416, 416), np.float32)
    done = threading.Event()

    def run() -> None:
        model.run(tensor)
        done.set()

    gate = run_gate(1)
    assert gate is not None
    with gate:  # another camera's run holds the only slot
        worker = threading.Thread(target=run)
        worker.start()
        assert not done.wait(1.0), "a run went ahead while the gate was taken"
    assert done.wait(30), "the run did not go ahead once the gate was free"
    worker.join()
    free = OnnxModel(models_dir / "yolox_nano.onnx", RuntimeOptions("cpu", 1))
    with gate:  # no limit configured: the gate does not apply
        assert free.run(tensor)[0].shape[-1] == 85  # COCO: box, objectness, 80 classes
