"""Multi-worker training: two worker processes on localhost train one recipe in sync."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from zoo.training import distributed as zdist

REPO = Path(__file__).resolve().parent.parent
TIMEOUT = 240  # seconds for the whole two-worker run


def _free_ports(count: int) -> list[int]:
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _weights(path: Path) -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def test_tf_config_from_flags():
    config = zdist.tf_config("127.0.0.1:1234, 127.0.0.1:1235", 1)
    assert config == {"cluster": {"worker": ["127.0.0.1:1234", "127.0.0.1:1235"]},
                      "task": {"type": "worker", "index": 1}}
    for workers, index in (("127.0.0.1:1", 1), ("", 0), ("localhost", 0), ("a:1,a:1", 0)):
        with pytest.raises(ValueError):
            zdist.tf_config(workers, index)


def test_two_workers_on_localhost_stay_in_sync(tmp_path):
    ports = _free_ports(2)
    workers = ",".join(f"127.0.0.1:{p}" for p in ports)
    run_dir = tmp_path / "run"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""}
    env.pop("TF_CONFIG", None)
    args = ["embedded", "data.source=embedded", "data.limit=128", "data.batch_size=32", "data.validation=32",
            "schedule.warmup_epochs=0.5", "train.epochs=1",
            "train.progress=none", "output.tensorboard=true", "--run-dir", str(run_dir), "--workers", workers,
            "--timeout", "120"]
    logs = [open(tmp_path / f"worker{i}.log", "w") for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "-m", "zoo", "train-distributed", *args, "--index", str(i)], cwd=tmp_path,
                              env=env, stdout=logs[i], stderr=subprocess.STDOUT) for i in range(2)]
    deadline = time.monotonic() + TIMEOUT
    try:
        for p in procs:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for f in logs:
            f.close()
    output = "\n".join(f"--- worker {i}\n" + (tmp_path / f"worker{i}.log").read_text()[-3000:] for i in range(2))
    assert [p.returncode for p in procs] == [0, 0], output

    for name in ("recipe.yaml", "history.csv", "tensorboard", "checkpoints/last.weights.h5", "model.weights.h5",
                 "model.keras", "report.json", "report.md", "curves.png"):
        assert (run_dir / name).exists(), name
    report = json.loads((run_dir / "report.json").read_text())
    assert report["status"] == "completed" and len(report["history"]) == 1
    assert report["distributed"]["strategy"] == "MultiWorkerMirroredStrategy"
    assert report["distributed"]["num_workers"] == 2 and report["distributed"]["num_replicas"] == 2
    assert report["distributed"]["per_replica_batch_size"] == 16
    assert report["final"]["val_accuracy"] is not None and "holdout" in report["evaluation"]

    worker = run_dir / "workers" / "worker-1"
    assert json.loads((worker / "worker.json").read_text())["status"] == "completed"
    ours, theirs = _weights(run_dir / "model.weights.h5"), _weights(worker / "model.weights.h5")
    assert ours.keys() == theirs.keys() and len(ours) > 50
    different = [k for k in ours if not np.array_equal(ours[k], theirs[k])]
    assert not different, f"weights differ across workers: {different[:5]}"


def _launch(tmp_path: Path, args: list[str], tag: str) -> tuple[list[subprocess.Popen], list[Path]]:
    """Two ``zoo train-distributed`` workers on fresh localhost ports, logging to files."""
    workers = ",".join(f"127.0.0.1:{p}" for p in _free_ports(2))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""}
    env.pop("TF_CONFIG", None)
    paths = [tmp_path / f"{tag}-worker{i}.log" for i in range(2)]
    procs = []
    for i, path in enumerate(paths):
        with open(path, "w") as log:
            procs.append(subprocess.Popen([sys.executable, "-m", "zoo", "train-distributed", *args, "--workers",
                                           workers, "--index", str(i)], cwd=tmp_path, env=env, stdout=log,
                                          stderr=subprocess.STDOUT))
    return procs, paths


def _saved_epoch(run_dir: Path) -> int:
    try:
        return json.loads((run_dir / "checkpoints" / "last.json").read_text())["epoch"]
    except (OSError, ValueError, KeyError):
        return 0


def test_a_killed_two_worker_run_resumes_from_its_last_finished_epoch(tmp_path):
    """Both workers are killed (SIGKILL) mid-run; rerun, both restart from the chief's run state at
    the same epoch, and the run ends with every epoch exactly once, the workers in sync."""
    epochs = 6
    run_dir = tmp_path / "run"
    args = ["embedded", "data.limit=1024", "data.batch_size=32", "data.validation=32", "train.epochs=%d" % epochs,
            "train.progress=none", "output.tensorboard=false", "--run-dir", str(run_dir), "--timeout", "120"]
    procs, _ = _launch(tmp_path, args, "first")
    deadline = time.monotonic() + TIMEOUT
    while _saved_epoch(run_dir) < 1 and all(p.poll() is None for p in procs) and time.monotonic() < deadline:
        time.sleep(0.05)
    for p in procs:
        p.kill()
        p.wait()
    killed_at = _saved_epoch(run_dir)
    assert 1 <= killed_at < epochs and not (run_dir / "report.json").exists(), "the kill came too late"

    procs, logs = _launch(tmp_path, args, "again")
    for p in procs:
        p.wait(timeout=TIMEOUT)
    output = "\n".join(path.read_text()[-3000:] for path in logs)
    assert [p.returncode for p in procs] == [0, 0], output
    for path in logs:
        assert "resuming at epoch" in path.read_text(), output
    report = json.loads((run_dir / "report.json").read_text())
    assert report["status"] == "completed" and report["settings"]["training_loop"].startswith("zoo.training")
    assert [r["epoch"] for r in report["history"]] == list(range(1, epochs + 1))
    ours, theirs = _weights(run_dir / "model.weights.h5"), _weights(run_dir / "workers" / "worker-1" / "model.weights.h5")
    assert ours.keys() == theirs.keys() and all(np.array_equal(ours[k], theirs[k]) for k in ours)
