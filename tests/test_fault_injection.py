"""A real ``python -m zoo train embedded`` process killed with SIGKILL at each write point of a run,
then rerun with the same command: every time the run completes, every file it left is readable,
the history holds each epoch once, and the seeded run ends with the same weights (final, best and
last) and history as one that was never interrupted.

The kills are placed by the test hook :func:`zoo.report.fault_point`: ``ZOO_FAULT_AT=LABEL[:N][:partial]``
kills the process the ``N``-th time it is about to rename the temporary file of ``LABEL`` (a file
name) into place, after cutting the temporary file to half with ``partial`` (a write cut short);
``batch`` is after each training batch (a kill inside an epoch). The reference run records every
label it reaches (``ZOO_FAULT_LOG``), and the tests check that their kill points cover them all, so
a write added later without a fault case fails here. TensorBoard's event files are not written by
the zoo's writers (TensorFlow appends to them; a reader skips a cut-off last record) and are not
checked.

Each process start costs ~10 s of imports, so the default suite runs one chain of kills in one
run directory (each kill resumed by the next process) and the full matrix, one fresh run per
kill point, is ``slow``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
EPOCHS = 3
# 256 train / 64 validation images of the shipped sample, 8 steps of 32 per epoch, seeded
OVERRIDES = ["data.limit=320", "data.validation=64", "data.batch_size=32", f"train.epochs={EPOCHS}",
             "train.progress=none"]
METRICS = ("loss", "accuracy", "val_loss", "val_accuracy", "lr")
STEPS = 8
KILLED = -9  # subprocess' return code of a process ended by SIGKILL


def zoo_train(run: Path, fault: str | None = None, log: Path | None = None,
              extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """``python -m zoo train embedded ...`` (plus ``extra`` overrides) into ``run``, with the fault
    hook set as asked."""
    env = {k: v for k, v in os.environ.items() if k not in ("ZOO_FAULT_AT", "ZOO_FAULT_LOG")}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", **({"ZOO_FAULT_AT": fault} if fault else {}),
               **({"ZOO_FAULT_LOG": str(log)} if log else {}))
    cmd = [sys.executable, "-m", "zoo", "train", "embedded", *OVERRIDES, *extra, "--run-dir", str(run)]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)


def h5_arrays(path: Path) -> dict[str, np.ndarray]:
    import h5py

    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    assert out, f"{path} holds no arrays"
    return out


def history_epochs(run: Path) -> list[int]:
    from zoo import report as zr

    return [r["epoch"] for r in zr.read_history(run / "history.csv")]


def is_temp(path: Path) -> bool:
    return path.name.startswith(".tmp-") or (path.name.startswith(".") and path.name.endswith(".tmp"))


def run_files(run: Path) -> list[Path]:
    """The run's files outside TensorBoard's logs."""
    return [p for p in run.rglob("*") if p.is_file() and "tensorboard" not in p.relative_to(run).parts]


def _png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[-8:-4] == b"IEND", "not a whole PNG"


def _markdown(path: Path) -> None:
    assert path.read_text(encoding="utf-8").startswith("# "), "not a report"


def _keras(path: Path) -> None:
    with zipfile.ZipFile(path) as z:
        assert z.testzip() is None and "model.weights.h5" in z.namelist(), "not a whole .keras archive"


def _npz(path: Path) -> None:
    with np.load(path) as saved:
        assert all(saved[k].size for k in saved.files), "an empty array"


READERS = {  # what each kind of run file must open as (history.csv: history_epochs below)
    ".h5": h5_arrays, ".npz": _npz, ".keras": _keras, ".png": _png, ".md": _markdown, ".csv": lambda p: None,
    ".json": lambda p: json.loads(p.read_text()), ".yaml": lambda p: yaml.safe_load(p.read_text()),
}


def check_readable(run: Path) -> None:
    """Every file the run holds (stray temporary files aside) opens as what its name says, and
    the history holds epochs 1..k once each, at least as many as the run state names."""
    for path in run_files(run):
        if is_temp(path):
            continue
        try:
            READERS[path.suffix](path)
        except Exception as err:  # noqa: BLE001 - name the file that does not read
            raise AssertionError(f"{path.relative_to(run)} is not readable: {err!r}") from err
    epochs = history_epochs(run)
    assert epochs == list(range(1, len(epochs) + 1)), f"history epochs {epochs}"
    state = run / "checkpoints" / "last.json"
    if state.exists():
        assert json.loads(state.read_text())["epoch"] <= len(epochs)


def check_same_as_reference(run: Path, reference: Path) -> None:
    """A completed run, no temporary file left, and the same history and weights as ``reference``."""
    from zoo import report as zr

    report = zr.read_json(run / "report.json")
    assert report["status"] == "completed"
    check_readable(run)
    assert not [p for p in run_files(run) if is_temp(p)], "stray temporary files survived the rerun"
    ours, theirs = zr.read_history(run / "history.csv"), zr.read_history(reference / "history.csv")
    assert [r["epoch"] for r in ours] == list(range(1, EPOCHS + 1))
    assert [[r[k] for k in METRICS] for r in ours] == [[r[k] for k in METRICS] for r in theirs]
    assert report["best"] == zr.read_json(reference / "report.json")["best"]
    for name in ("model.weights.h5", "checkpoints/best.weights.h5", "checkpoints/last.weights.h5"):
        a, b = h5_arrays(run / name), h5_arrays(reference / name)
        assert a.keys() == b.keys(), name
        differ = [k for k in a if not np.array_equal(a[k], b[k])]
        assert not differ, f"{name}: {len(differ)} arrays differ from the uninterrupted run's, e.g. {differ[:3]}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, list[str]]:
    """One uninterrupted run, and the write points (labels) it reached, in order."""
    root = tmp_path_factory.mktemp("fault-reference")
    log = root / "labels.txt"
    out = zoo_train(root / "run", log=log)
    assert out.returncode == 0, out.stderr[-3000:]
    labels = log.read_text().split()
    assert labels.count("batch") == EPOCHS * STEPS
    assert labels.count("best.weights.h5") >= 2, "the matrix needs best weights saved at two epochs"
    return root / "run", labels


def fault(spec: str, run: Path, extra: tuple[str, ...] = ()) -> None:
    """Kill a run at ``spec``; the files left must read, and a cut-short write leaves its temporary file."""
    out = zoo_train(run, spec, extra=extra)
    assert out.returncode == KILLED, f"{spec} was never reached (rc {out.returncode}): {out.stderr[-2000:]}"
    check_readable(run)
    if spec.endswith(":partial"):
        assert [p for p in run_files(run) if is_temp(p)], f"{spec} left no temporary file"
    assert not (run / "report.json").exists()


# a kill in each epoch, before each file's rename (whole and cut-short temporary files), in
# the order a run writes them; N counts that label's writes in the killed process
MATRIX = [
    "recipe.yaml:1:partial", f"batch:{STEPS // 2}", "history.csv:1", "best.weights.h5:1:partial",
    "last.weights.h5:1", "last.json:1", f"batch:{STEPS + 3}", "history.csv:2:partial", "best.weights.h5:2",
    "last.weights.h5:2:partial", "last.json:2", "last.json:3", "history.csv:3", "model.weights.h5:1:partial",
    "model.keras:1", "curves.png:1:partial", "report.md:1", "report.json:1:partial",
]
# the default suite's chain, one run directory: each process resumes the last one's leftovers
CHAIN = [
    f"batch:{STEPS + 4}",  # inside epoch 2
    "best.weights.h5:1:partial",  # epoch 2's best weights cut short (its history row already written)
    "last.json:1",  # epoch 2's run state: the weights renamed, the epoch not
    "history.csv:1:partial",  # epoch 3's history row cut short
    "report.md:1",  # between curves.png and report.md: the training is over
]


def test_chained_kills_resume_to_the_uninterrupted_run(reference, tmp_path):
    ref, _ = reference
    run = tmp_path / "run"
    for spec in CHAIN:
        fault(spec, run)
    out = zoo_train(run)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads((run / "report.json").read_text())["timing"]["epochs_this_session"] == 0  # nothing retrained
    check_same_as_reference(run, ref)


def test_the_matrix_covers_every_write_point(reference):
    _, labels = reference
    covered = {spec.split(":")[0] for spec in MATRIX}
    assert set(labels) <= covered, f"write points without a fault case: {set(labels) - covered}"
    assert labels.index("report.json") == len(labels) - 1, "report.json, the finished marker, is not written last"


@pytest.mark.slow
@pytest.mark.parametrize("spec", MATRIX)
def test_kill_at_each_write_point_then_rerun(reference, tmp_path, spec):
    run = tmp_path / "run"
    fault(spec, run)
    out = zoo_train(run)
    assert out.returncode == 0, out.stderr[-3000:]
    check_same_as_reference(run, reference[0])


SWA = ("train.swa_start_epoch=2",)  # the running average of epochs 2-3 in checkpoints/swa.npz


@pytest.fixture(scope="module")
def swa_reference(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("fault-swa") / "run"
    log = run.parent / "labels.txt"
    out = zoo_train(run, log=log, extra=SWA)
    assert out.returncode == 0, out.stderr[-3000:]
    assert log.read_text().split().count("swa.npz") == 2
    return run


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["swa.npz:1:partial", "last.weights.h5:2", "last.json:2", "swa.npz:2", "model.keras:1"])
def test_weight_averaged_run_killed_at_its_average_then_rerun(swa_reference, tmp_path, spec):
    """With SWA the average joins the epoch's writes (before the run state): a kill around it must
    neither lose an epoch from the average nor count one twice."""
    run = tmp_path / "run"
    fault(spec, run, SWA)
    out = zoo_train(run, extra=SWA)
    assert out.returncode == 0, out.stderr[-3000:]
    check_same_as_reference(run, swa_reference)
    assert json.loads((run / "report.json").read_text())["weight_averaging"]["models_averaged"] == 2
