"""A benchmark runner in its own process, and the line protocol between it and its parent.

``python -m zoo.bench.worker SPEC`` (SPEC: the JSON runner spec of
:func:`zoo.bench.step.make_keras_runner` or :func:`zoo.bench.torch_resnet.make_torch_runner`)
builds one runner, warms it up and prints ``@@zoo-bench {"event": "ready", ...}``; then each
``measure STEPS REWARM`` line on its stdin is answered with ``{"event": "measured", "times": [...]}``
until ``quit``. A failure is answered with ``{"event": "error", "error": "..."}``.

Each process has its own threads, dtype policy, XLA and oneDNN settings and memory high-water
mark. This module imports neither TensorFlow nor PyTorch at its top: a PyTorch peer's process
holds PyTorch alone, and a zoo model's process TensorFlow alone.
"""
from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from zoo import runtime
from zoo.bench.checks import BenchWorkerError

__all__ = ["PREFIX", "Worker", "main", "make_runner", "serve"]

PREFIX = "@@zoo-bench "  # worker protocol lines on stdout
ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------ the child
def make_runner(spec: Mapping[str, Any]) -> Any:
    """The runner ``spec`` asks for: PyTorch for ``impl="torch"``, Keras otherwise."""
    if spec.get("impl", "zoo") == "torch":
        from zoo.bench.torch_resnet import make_torch_runner  # torch: an optional dependency

        return make_torch_runner(spec)
    from zoo.bench.step import make_keras_runner  # TensorFlow only in the processes that time Keras

    return make_keras_runner(spec)


def _emit(payload: Mapping[str, Any]) -> None:
    sys.__stdout__.write(PREFIX + json.dumps(payload) + "\n")
    sys.__stdout__.flush()


def _ready(runner: Any, warmup_s: float, rss_before: float | None) -> dict[str, Any]:
    versions = dict(getattr(runner, "versions", {}))
    tf = sys.modules.get("tensorflow")  # only where the runner imported it
    if tf is not None:
        versions.update(intra_op_threads=tf.config.threading.get_intra_op_parallelism_threads(),
                        inter_op_threads=tf.config.threading.get_inter_op_parallelism_threads())
    return {"event": "ready", "label": runner.label, "params": runner.params, "flops": runner.flops,
            "batch_size": runner.batch_size, "policy": runner.policy, "jit_compile": runner.jit_compile,
            "warmup_s": warmup_s, "rss_before_mb": rss_before, "peak_rss_mb": runtime.peak_rss_mb(), **versions}


def serve(spec_text: str) -> int:
    """Build the runner of ``spec_text``, warm it up, report ``ready``, then answer ``measure``
    lines on stdin until ``quit`` or end of input. Returns the exit status."""
    try:
        spec = json.loads(spec_text)
        runtime.reset_peak_rss()
        rss_before = runtime.rss_mb()
        runner = make_runner(spec)
        start = time.perf_counter()
        runner.measure(int(spec.get("warmup", 2)))
        _emit(_ready(runner, time.perf_counter() - start, rss_before))
    except Exception as err:  # noqa: BLE001 - reported to the parent, which raises
        _emit({"event": "error", "error": f"{type(err).__name__}: {err}"})
        return 1
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            break
        if words[0] == "measure":
            steps, rewarm = int(words[1]), int(words[2]) if len(words) > 2 else 1
            runner.measure(rewarm)
            times = runner.measure(steps)
            _emit({"event": "measured", "times": times, "peak_rss_mb": runtime.peak_rss_mb()})
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m zoo.bench.worker SPEC``."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m zoo.bench.worker SPEC_JSON (started by zoo bench --sweep/--peers)", file=sys.stderr)
        return 2
    return serve(argv[0])


# ------------------------------------------------------------------------------ the parent
class Worker:
    """The parent's handle on one worker process: start it, ``measure`` steps, ``close`` it."""

    def __init__(self, spec: Mapping[str, Any], env: Mapping[str, str] | None = None, timeout: float = 900):
        self.spec, self.timeout = dict(spec), timeout
        full_env = {**os.environ, **(env or {})}
        full_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), full_env.get("PYTHONPATH")) if p)
        full_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        self.stderr = tempfile.TemporaryFile()
        self._buffer = b""
        self.proc = subprocess.Popen([sys.executable, "-m", "zoo.bench.worker", json.dumps(self.spec)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
                                     env=full_env)
        self.info = self._read("ready")

    @property
    def name(self) -> str:
        return f"benchmark worker {self.spec.get('name')} ({self.spec.get('impl')})"

    def _stderr_tail(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")[-2000:]

    def _next_line(self, event: str, deadline: float) -> str:
        """The next line the worker prints. Reads the pipe unbuffered (a buffered reader could
        hold a complete line that select() never sees)."""
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            ready = select.select([fd], [], [], max(left, 0))[0] if left > 0 else []
            if not ready:
                self.close(kill=True)
                raise BenchWorkerError(f"{self.name} gave no {event!r} within {self.timeout:.0f} s")
            chunk = os.read(fd, 65536)
            if not chunk:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(10)
                raise BenchWorkerError(f"{self.name} exited ({self.proc.returncode}):\n{self._stderr_tail()}")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\n", 1)
        return raw.decode(errors="replace")

    def _read(self, event: str) -> dict[str, Any]:
        """The next protocol message ``event``; other output of the worker is skipped."""
        deadline = time.monotonic() + self.timeout
        while True:
            line = self._next_line(event, deadline)
            if not line.startswith(PREFIX):
                continue
            payload = json.loads(line[len(PREFIX):])
            if payload.get("event") == "error":
                self.close(kill=True)
                raise BenchWorkerError(f"{self.name} failed: {payload['error']}")
            if payload.get("event") == event:
                return payload

    def measure(self, steps: int, rewarm: int = 1) -> dict[str, Any]:
        """``steps`` timed steps after ``rewarm`` untimed ones: ``{"times", "peak_rss_mb"}``."""
        self.proc.stdin.write(f"measure {steps} {rewarm}\n".encode())
        self.proc.stdin.flush()
        return self._read("measured")

    def close(self, kill: bool = False) -> None:
        """Ask the worker to quit (or kill it), and wait for it."""
        if self.proc.poll() is None:
            if not kill:
                with contextlib.suppress(OSError, ValueError):
                    self.proc.stdin.write(b"quit\n")
                    self.proc.stdin.flush()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(30)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
        self.stderr.close()


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
