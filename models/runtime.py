"""onnxruntime sessions: provider from config, thread counts, quiet logs, one warm-up.

onnxruntime is imported here and nowhere else in the model runners.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ringwatch.errors import ModelError

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


@dataclass(frozen=True, slots=True)
class RuntimeOptions:
    """How sessions are made: provider name (cpu, cuda, openvino, tensorrt), threads, and
    ``concurrent_runs``: at most that many runs of any model at once in this process (0: no
    limit). Eight camera threads each starting a 2-thread run on a 2-core box share the
    cores among 16 threads and all finish late; one run at a time finishes each early."""

    provider: str = "cpu"
    threads: int = 2
    concurrent_runs: int = 0


_GATES: dict[int, threading.BoundedSemaphore] = {}
_GATES_LOCK = threading.Lock()


def run_gate(concurrent: int) -> threading.BoundedSemaphore | None:
    """The process-wide gate for ``concurrent`` runs at once (one per count), or None."""
    if concurrent <= 0:
        return None
    with _GATES_LOCK:
        return _GATES.setdefault(concurrent, threading.BoundedSemaphore(concurrent))


class OnnxModel:
    """One onnxruntime session with named inputs/outputs; ``run`` returns output arrays."""

    def __init__(self, path: Path, options: RuntimeOptions = RuntimeOptions()) -> None:
        import onnxruntime as ort

        ort.set_default_logger_severity(3)  # graph warnings would pollute JSON output
        so = ort.SessionOptions()
        so.intra_op_num_threads = options.threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        # Spinning worker threads burn CPU that other cameras and models need on a small box
        # (YOLOX-nano at load ~15: 124-134 ms with spinning, 62-82 ms without).
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = self._providers(options.provider, ort.get_available_providers())
        try:
            self.session = ort.InferenceSession(str(path), sess_options=so, providers=providers)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"{path}: onnxruntime cannot load it: {exc}") from None
        self.path = path
        self._gate = run_gate(options.concurrent_runs)
        self.provider = self.session.get_providers()[0]
        inp = self.session.get_inputs()[0]
        self.input_name: str = inp.name
        self.input_shape: list[Any] = list(inp.shape)
        self.output_names: list[str] = [o.name for o in self.session.get_outputs()]

    @staticmethod
    def _providers(name: str, available: list[str]) -> list[str]:
        try:
            wanted = PROVIDERS[name]
        except KeyError:
            raise ModelError(
                f"unknown provider {name!r} (choose from {sorted(PROVIDERS)})"
            ) from None
        if wanted not in available:
            raise ModelError(f"provider {name} ({wanted}) is not available here: {available}")
        return [wanted, "CPUExecutionProvider"] if wanted != "CPUExecutionProvider" else [wanted]

    def run(self, tensor: npt.NDArray[np.float32]) -> list[npt.NDArray[np.float32]]:
        if self._gate is None:
            outputs = self.session.run(self.output_names, {self.input_name: tensor})
        else:
            with self._gate:
                outputs = self.session.run(self.output_names, {self.input_name: tensor})
        return [np.asarray(o, dtype=np.float32) for o in outputs]

    def warm_up(self) -> None:
        """Run once on zeros of the input shape (dynamic dims taken as 1)."""
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in self.input_shape]
        self.run(np.zeros(shape, dtype=np.float32))
