"""Killed searches resume (zoo.search): a search killed between trials, a trial process killed
mid-epoch (it continues from its last finished epoch), and keras-tuner's chief/worker mode.

Real processes, tiny data (tests/tiny_search.py); every wait is bounded and every process killed.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tiny_search import subprocess_env, write_recipe
from zoo import cli, search
from zoo.report import read_history, read_json


@pytest.fixture
def tiny(tmp_path):
    return write_recipe(tmp_path / "tiny.yaml")


def _wait_for(condition, proc: subprocess.Popen, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the search exited ({proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _kill(proc: subprocess.Popen) -> None:
    """SIGKILL the search's process group (its trial process dies with it: PR_SET_PDEATHSIG)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def test_resume_after_a_killed_search(tiny, tmp_path, capsys):
    project = tmp_path / "killed"
    args = [str(tiny), "--project-dir", str(project), "--max-trials", "2", "--isolate", "none",
            "--latency-repeats", "5", "--choices", "pool1=max,conv"]
    proc = subprocess.Popen([sys.executable, "-m", "zoo", "tune", *args], env=subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    first = project / "trial_0" / search.RECORD
    try:
        _wait_for(first.exists, proc, 150, "the first trial finished")
    finally:
        _kill(proc)
    started = read_json(first)["started"]
    assert {p.parent.name for p in project.glob(f"trial_*/{search.RECORD}")} == {"trial_0"}
    assert cli.main(["tune", *args]) == 2  # the same command without --resume: a clear error, nothing touched
    err = capsys.readouterr().err
    assert "already holds a search (1 finished trial(s))" in err and "--resume" in err and "--overwrite" in err
    assert cli.main(["tune", *args, "--resume"]) == 0  # the same command with --resume (in this process)
    out = capsys.readouterr().out
    assert "resuming" in out and "zoo.tune: trial 1 completed" in out
    assert "zoo.tune: trial 0 completed" not in out  # trial 0 was not run again
    study = read_json(project / "study.json")
    assert [t["status"] for t in study["trials"]] == ["completed"] * 2
    assert len({t["label"] for t in study["trials"]}) == 2  # two different configurations
    assert read_json(first)["started"] == started  # the finished trial was not trained again


def test_a_trial_process_killed_mid_epoch_resumes_at_its_next_epoch(tmp_path, capsys):
    """kill -9 of a real search (and so of its trial process) after the trial's first epoch
    finished, while the next one trains; --resume continues that trial after its last finished
    epoch: every epoch in its history exactly once, and its log says where it resumed."""
    recipe = write_recipe(tmp_path / "three.yaml", data={"limit": 450}, train={"epochs": 3})  # ~1-2 s an epoch
    project = tmp_path / "project"
    args = [str(recipe), "--project-dir", str(project), "--max-trials", "1", "--isolate", "process",
            "--latency-repeats", "2", "--choices", "pool1=max,conv"]
    trial = project / "trial_0"
    state = trial / "run" / "checkpoints" / "last.json"  # the run state: {"epoch": epochs finished and saved}
    proc = subprocess.Popen([sys.executable, "-m", "zoo", "tune", *args], env=subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_for(state.exists, proc, 120, "the trial's first epoch was checkpointed")
        time.sleep(0.4)  # into the next epoch
    finally:
        _kill(proc)
    done = read_history(trial / "run" / "history.csv")
    finished = read_json(state)["epoch"]  # the epochs a resume restores (history.csv is written just before)
    assert 1 <= finished <= len(done) < 3  # killed mid-run, after at least one finished epoch
    assert not (trial / search.RECORD).exists()
    assert cli.main(["tune", *args, "--resume"]) == 0
    record = read_json(trial / search.RECORD)
    assert record["status"] == "completed", record.get("message")
    assert record["resumed_from_epoch"] == finished
    assert [row["epoch"] for row in record["history"]] == [1, 2, 3]  # each epoch exactly once
    assert [row["epoch"] for row in read_history(trial / "run" / "history.csv")] == [1, 2, 3]
    assert record["history"][:finished] == done[:finished]  # the epochs before the kill were kept, not retrained
    second_run = (trial / "log.txt").read_text().split("\n--- ")[-1]  # the log of the resumed trial process
    assert f"resuming at epoch {finished + 1}" in second_run
    assert f"resuming at epoch {finished + 1}" in capsys.readouterr().out  # echoed by the search


# ------------------------------------------------------------------------- chief and workers
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the chief exited early ({proc.returncode})")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise AssertionError("the chief did not start serving in time")


def _run_chief_and_workers(cmd, env, port, procs, logs) -> None:
    """Start the chief, wait until it serves, start two workers, wait for all (bounded); kill what is left."""
    try:
        procs["chief"] = subprocess.Popen(cmd + ["--overwrite"], env={**env, "KERASTUNER_TUNER_ID": "chief"},
                                          stdout=logs["chief"], stderr=subprocess.STDOUT, start_new_session=True)
        _wait_for_port(port, procs["chief"], timeout=120)
        for worker in ("tuner0", "tuner1"):
            procs[worker] = subprocess.Popen(cmd, env={**env, "KERASTUNER_TUNER_ID": worker}, stdout=logs[worker],
                                             stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 300
        for proc in procs.values():
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        codes = {name: proc.returncode for name, proc in procs.items()}
        assert codes == {"chief": 0, "tuner0": 0, "tuner1": 0}, codes
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)


@pytest.mark.slow
def test_chief_and_two_workers_on_localhost(tiny, tmp_path):
    """keras-tuner's distributed mode: the chief serves the oracle on a free localhost port, two
    workers train the trials; bounded waits, every process killed at the end."""
    project, port = tmp_path / "distributed", _free_port()
    cmd = [sys.executable, "-m", "zoo", "tune", str(tiny), "--project-dir", str(project), "--max-trials", "3",
           "--isolate", "none", "--latency-repeats", "5", "--choices", "pool1=max,conv", "--choices", "pool2=avg,conv"]
    env = {**subprocess_env(), "KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(port)}
    procs: dict[str, subprocess.Popen] = {}
    with contextlib.ExitStack() as stack:
        logs = {name: stack.enter_context(open(tmp_path / f"{name}.log", "w")) for name in ("chief", "tuner0", "tuner1")}
        _run_chief_and_workers(cmd, env, port, procs, logs)
    study = read_json(project / "study.json")
    assert study["summary"]["completed"] == 3
    assert {t["tuner_id"] for t in study["trials"]} <= {"tuner0", "tuner1"}  # the chief trains nothing
    assert (project / "report.md").exists() and (project / "chief.json").exists()
