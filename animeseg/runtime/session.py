"""The one place that makes inference sessions for ONNX files: ONNX Runtime or OpenVINO, fp32 or bf16.

Every ONNX model animeseg runs (YOLO-seg detectors, refiners) gets its session from :func:`create_session`, so the
backend, precision and thread choices are made once, by the rules below, and a user can override them with one
option. ``auto`` picks by what was measured on CPUs (docs/benchmarks.md):

* backend: OpenVINO when it is installed (it is the core install's runtime), else ONNX Runtime (the
  ``onnxruntime`` extra). On the packaged 640 px model OpenVINO fp32 ran at least as fast as ONNX Runtime fp32,
  and its bf16 inference precision 1.6-4x faster.
* precision: ``bf16`` where OpenVINO reports the CPU can compute in it (AVX-512 BF16 or AMX), else ``fp32``.
  ONNX Runtime always runs the model in its own precision (``fp32``; an int8 file stays int8).
* threads and streams: ``streams`` calls run side by side (OpenVINO streams; ONNX Runtime runs concurrent calls
  anyway), each on ``threads`` cores (default: the cores divided among the streams). A batch keeps every core
  busy with one image per core rather than one image on all cores: on two cores OpenVINO spent 70 ms of CPU per
  inference single-threaded against 90 ms with two threads (their synchronisation), so the YOLO detector runs
  one stream per core (docs/benchmarks.md).

OpenVINO's compiled models are cached in ``<animeseg home>/openvino`` (``$ANIMESEG_HOME``, else
``~/.cache/animeseg``), so a second process loads a model in a fraction of the compile time.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from animeseg.errors import AnimesegError, InputError, MissingExtraError

__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "RUNTIMES",
    "Session",
    "create_session",
    "default_threads",
    "parse_runtime",
    "resolve_backend",
]

BACKENDS = ("auto", "openvino", "onnxruntime")
PRECISIONS = ("auto", "fp32", "bf16")
#: ``--runtime`` choices, one name for a backend and its precision: name -> (backend, precision).
RUNTIMES = {
    "auto": ("auto", "auto"),
    "openvino": ("openvino", "auto"),
    "openvino-bf16": ("openvino", "bf16"),
    "openvino-fp32": ("openvino", "fp32"),
    "onnxruntime": ("onnxruntime", "fp32"),
}
_OV_PRECISION = {"fp32": "f32", "bf16": "bf16"}


def parse_runtime(runtime: str) -> tuple[str, str]:
    """(backend, precision) of a ``--runtime`` name (:data:`RUNTIMES`); one-line error for an unknown one."""
    if runtime not in RUNTIMES:
        raise AnimesegError(f"--runtime {runtime}: choose one of {', '.join(RUNTIMES)}")
    return RUNTIMES[runtime]


def default_threads() -> int:
    """Intra-op threads a session uses when none are asked for: every core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@contextmanager
def no_openvino_telemetry() -> Iterator[None]:
    """Inside the block, OpenVINO's usage telemetry stays off.

    Importing ``openvino`` (and each ``convert_model``) starts its model converter's telemetry
    (``openvino_telemetry``): it writes ``~/intel`` and sends anonymous usage events to Google Analytics unless
    the user opted out, or it runs in CI. animeseg never reaches the network and writes nothing outside its own
    folders, so the block runs with ``CI=true``, the switch that telemetry reads, and restores the variable after.
    """
    before = os.environ.get("CI")
    os.environ["CI"] = "true"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("CI", None)
        else:
            os.environ["CI"] = before


def import_openvino() -> Any:
    """The ``openvino`` module, imported with its telemetry off (:func:`no_openvino_telemetry`)."""
    with no_openvino_telemetry():
        import openvino

    return openvino


def _installed(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a blocked or broken package
        return False


def openvino_available() -> bool:
    """True when the ``openvino`` package can be imported."""
    return _installed("openvino")


def onnxruntime_available() -> bool:
    """True when the ``onnxruntime`` package (the ``onnxruntime`` extra) can be imported."""
    return _installed("onnxruntime")


def resolve_backend(backend: str = "auto") -> str:
    """``openvino`` or ``onnxruntime`` for a backend name (``auto``: OpenVINO when installed); one-line error for
    an unknown or missing one."""
    if backend not in BACKENDS:
        raise AnimesegError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    if backend == "auto":
        if openvino_available():
            return "openvino"
        if onnxruntime_available():
            return "onnxruntime"
        raise AnimesegError("no ONNX runtime is installed: pip install openvino (a core dependency of animeseg)")
    if backend == "openvino" and not openvino_available():
        raise AnimesegError("backend openvino: the openvino package is not installed (pip install openvino)")
    if backend == "onnxruntime" and not onnxruntime_available():
        raise MissingExtraError("onnxruntime", "onnxruntime", "the onnxruntime backend")
    return backend


@dataclass(frozen=True)
class Port:
    """One input or output of a session: its name, shape (None or a name for a dynamic dimension) and element
    type (a numpy dtype name)."""

    name: str
    shape: tuple[int | str | None, ...]
    dtype: str


class Session:
    """An ONNX model ready to run on one backend. ``run`` is thread-safe: concurrent calls run concurrently.

    Attributes:
        path: the model file.
        backend: ``onnxruntime`` or ``openvino``.
        precision: the inference precision actually used (``fp32`` or ``bf16``).
        threads: intra-op threads of one call.
        streams: calls that run side by side (from different threads).
        inputs, outputs: the model's :class:`Port` s, in the model's order.
    """

    path: Path
    backend: str
    precision: str
    threads: int
    streams: int = 1
    inputs: list[Port]
    outputs: list[Port]

    @property
    def input_names(self) -> list[str]:
        return [p.name for p in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [p.name for p in self.outputs]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The model's outputs, in :attr:`outputs` order, for ``feeds`` (input name -> array)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return (
            f"<{self.backend} {self.precision} session of {self.path.name}, {self.streams} stream(s) of "
            f"{self.threads} thread(s)>"
        )


_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int64)": "int64"}


class OrtSession(Session):
    """A session on ONNX Runtime's CPU execution provider."""

    def __init__(self, path: Path, threads: int, streams: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # its warnings (unused initialisers...) are not the user's business
        # spinning threads burn the cores the next image's decoding and the mask work need (measured: slower)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise InputError(path, f"ONNX Runtime cannot load the model ({str(e).splitlines()[0][:200]})") from None
        self.path, self.backend, self.precision, self.threads = path, "onnxruntime", "fp32", threads
        self.streams = streams  # concurrent run() calls each get their own intra-op work

        def port(p: Any) -> Port:
            shape = tuple(d if isinstance(d, int) else None for d in p.shape)
            return Port(p.name, shape, _ORT_TYPES.get(p.type, p.type))

        self.inputs = [port(p) for p in self._session.get_inputs()]
        self.outputs = [port(p) for p in self._session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return list(self._session.run(None, feeds))


def _ov_cache_dir() -> Path:
    from animeseg._offline import home

    return home() / "openvino"


#: compiled shapes an int8 model keeps (:class:`OpenVinoSession`); a folder of one frame size needs one
_SHAPES_KEPT = 8


def _quantised(model: Any) -> bool:
    return any(op.get_type_name() == "FakeQuantize" for op in model.get_ops())


def _spatially_dynamic(model: Any) -> bool:
    return any(not d.is_static for p in model.inputs for d in list(p.get_partial_shape())[1:])


class OpenVinoSession(Session):
    """A session on OpenVINO's CPU plugin; each thread that calls ``run`` gets its own infer request.

    An int8 model whose inputs have a dynamic height and width is compiled once per input shape it is given
    (the batch stays dynamic; the last :data:`_SHAPES_KEPT` shapes are kept): OpenVINO 2026.4 computes such
    a model wrongly with dynamic spatial dimensions (the packaged detector's int8 export found nothing on the
    held-out set: mask AP 0.000 against 0.774 on ONNX Runtime), and right once they are static.
    """

    def __init__(self, path: Path, threads: int, precision: str, cache: bool = True, streams: int = 1) -> None:
        ov = import_openvino()

        self._core = core = ov.Core()
        self._config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": _OV_PRECISION[precision],
            "PERFORMANCE_HINT": "LATENCY" if streams == 1 else "THROUGHPUT",
            "NUM_STREAMS": streams,
            "INFERENCE_NUM_THREADS": threads * streams,
        }
        if cache:
            try:
                _ov_cache_dir().mkdir(parents=True, exist_ok=True)
                self._config["CACHE_DIR"] = str(_ov_cache_dir())
            except OSError:
                pass  # a read-only home: compile every time
        try:
            self._model = core.read_model(str(path))
            self._per_shape = _quantised(self._model) and _spatially_dynamic(self._model)
            # from the path, so that a cached compiled model loads without converting the ONNX file again
            self._compiled = None if self._per_shape else core.compile_model(str(path), "CPU", self._config)
        except Exception as e:
            raise InputError(path, f"OpenVINO cannot load the model ({str(e).splitlines()[0][:200]})") from None
        self.path, self.backend, self.precision, self.threads = path, "openvino", precision, threads
        self.streams = streams

        def port(p: Any) -> Port:
            shape = tuple(d.get_length() if d.is_static else None for d in p.get_partial_shape())
            return Port(p.get_any_name(), shape, p.get_element_type().to_dtype().name)

        self.inputs = [port(p) for p in self._model.inputs]
        self.outputs = [port(p) for p in self._model.outputs]
        if not self._per_shape:
            self._model = None  # compiled once: the graph is not needed again
        self._local = threading.local()
        self._by_shape: dict[tuple, Any] = {}
        self._lock = threading.Lock()

    def _compiled_for(self, feeds: dict[str, np.ndarray]) -> Any:
        """The compiled model that runs ``feeds``: the one model, or (per-shape models) the one of their shapes."""
        if not self._per_shape:
            return self._compiled
        key = tuple((name, a.shape[1:]) for name, a in sorted(feeds.items()))
        with self._lock:
            compiled = self._by_shape.pop(key, None)
            if compiled is None:
                model = self._model.clone()
                model.reshape({name: [-1, *a.shape[1:]] for name, a in feeds.items()})
                try:
                    compiled = self._core.compile_model(model, "CPU", self._config)
                except Exception as e:
                    msg = str(e).splitlines()[0][:200]
                    raise InputError(self.path, f"OpenVINO cannot compile the model for {key} ({msg})") from None
                while len(self._by_shape) >= _SHAPES_KEPT:
                    self._by_shape.pop(next(iter(self._by_shape)))
            self._by_shape[key] = compiled  # most recently used last
        return compiled

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        compiled = self._compiled_for(feeds)
        requests = getattr(self._local, "requests", None)
        if requests is None:
            requests = self._local.requests = {}
        request = requests.get(id(compiled))
        if request is None or request[0] is not compiled:
            with self._lock:  # forget the requests of compiled shapes no longer kept
                live = {id(c) for c in self._by_shape.values()} | {id(self._compiled)}
            for key in [k for k in requests if k not in live]:
                del requests[key]
            request = requests[id(compiled)] = (compiled, compiled.create_infer_request())
        result = request[1].infer(feeds, share_inputs=True)
        return [result[p] for p in compiled.outputs]


def bf16_supported() -> bool:
    """True when OpenVINO reports that this CPU computes in bf16 (AVX-512 BF16 or AMX)."""
    ov = import_openvino()

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def resolve_precision(backend: str, precision: str = "auto") -> str:
    """The precision a session of ``backend`` uses for ``precision`` (``auto``: bf16 on OpenVINO where the CPU
    has it, else fp32); one-line error for a precision the backend cannot give."""
    if precision not in PRECISIONS:
        raise AnimesegError(f"unknown precision {precision!r} (choose from {', '.join(PRECISIONS)})")
    if backend == "onnxruntime":
        if precision == "bf16":
            raise AnimesegError("precision bf16 needs the openvino backend (ONNX Runtime runs the model as stored)")
        return "fp32"
    if precision == "auto":
        return "bf16" if bf16_supported() else "fp32"
    return precision


def create_session(
    path: str | Path,
    backend: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
    cache: bool = True,
    streams: int = 1,
) -> Session:
    """A :class:`Session` for the ONNX model at ``path``.

    Args:
        path: an ``.onnx`` file, or an OpenVINO IR ``.xml`` (OpenVINO only); dynamic dimensions (a dynamic
            batch, for example) stay dynamic.
        backend: ``auto``, ``openvino`` or ``onnxruntime`` (see the module doc for ``auto``).
        precision: ``auto``, ``fp32`` or ``bf16`` (bf16: OpenVINO only).
        threads: intra-op threads per call; None: :func:`default_threads` divided among the streams.
        cache: let OpenVINO keep the compiled model in animeseg's home folder.
        streams: calls that run side by side, each from its own thread (a batch's images in parallel).

    A missing or unreadable model, an unknown backend or a precision the backend lacks is a one-line error.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(path, "model file not found")
    if path.suffix.lower() == ".xml":  # an OpenVINO IR runs on OpenVINO only
        if backend == "onnxruntime":
            raise InputError(path, "an OpenVINO model runs on the openvino backend, not onnxruntime")
        backend = "openvino"
    name = resolve_backend(backend)
    prec = resolve_precision(name, precision)
    streams = max(1, int(streams))
    threads = int(threads) if threads else max(1, default_threads() // streams)
    if name == "openvino":
        return OpenVinoSession(path, threads, prec, cache=cache, streams=streams)
    return OrtSession(path, threads, streams)
