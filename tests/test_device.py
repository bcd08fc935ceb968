"""The device policy (zoo.training.device): the machine, the decision rule on synthetic
calibrations, the cache under KERAS_HOME, the training hook, and one real short calibration.

The suite runs with ZOO_DEVICE_POLICY=static (tests/conftest.py); these tests switch it to auto.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re

import keras
import pytest

from zoo.errors import ZooError
from zoo.training import calibration, device, policy_cache
from zoo.training.calibration import KERNEL, Workload, workload_for
from zoo.training.device import (ACCURACY, CPU_EVIDENCE, GPU_EVIDENCE, MIN_SPEEDUP, DeviceError, Machine,
                                 apply_training_settings, candidates, choose_settings, cpu_flags, decide,
                                 onednn_enabled, policy_cache_file, resolve_policy, resolve_precision)
from zoo.training.recipe import RecipeError, load_recipe
from zoo.training.results import settings_facts

XEON_AMX = Machine("Intel(R) Xeon(R) Processor", 2,
                   ("amx_bf16", "amx_tile", "avx2", "avx512_bf16", "avx512_fp16", "avx512f"))
EPYC = Machine("AMD EPYC 7B13 64-Core Processor", 2, ("avx2",))
A100 = Machine("AMD EPYC 7742", 16, ("avx2",), gpu="1x NVIDIA A100-SXM4-40GB", gpu_compute=(8, 0))
P100 = dataclasses.replace(A100, gpu="1x Tesla P100-PCIE-16GB", gpu_compute=(6, 0))
TINY = Workload("resnet20", (16, 16, 3), 4)


class FakeMeasure:
    """A calibration that times nothing: ``rates`` (precision -> images/s), counted."""

    def __init__(self, **rates: float):
        self.rates, self.calls = rates, []

    def __call__(self, workload, precisions, jit_compile=False):
        self.calls.append((workload.key, tuple(precisions), jit_compile))
        return {p: self.rates[p] for p in precisions}


@pytest.fixture
def policy_home(tmp_path, monkeypatch):
    """ZOO_DEVICE_POLICY=auto, the cache in a fresh KERAS_HOME, no decision kept from another test."""
    monkeypatch.setenv("ZOO_DEVICE_POLICY", "auto")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    monkeypatch.setattr(policy_cache, "_UNSTORED", {})
    monkeypatch.setattr(policy_cache, "_WARNED", set())
    monkeypatch.setattr(device, "_load_average", lambda: 0.5)  # an idle machine, whatever this one's load
    return tmp_path / "keras-home" / "zoo" / "device-policy.json"


# ------------------------------------------------------------------------------ the machine
CPUINFO = """processor\t: 0
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8
"""


def test_cpu_flags_and_the_machine_fingerprint():
    assert {"avx512_bf16", "amx_bf16", "amx_tile"} <= cpu_flags(CPUINFO) and "sse2" in cpu_flags(CPUINFO)
    assert cpu_flags("Features\t: fp asimd bf16\n") == {"fp", "asimd", "bf16"}
    assert cpu_flags("no flags here") == frozenset()
    here = device.detect_machine()
    assert here.kind == device.device_kind() and here.cores >= 1 and set(here.flags) <= set(device.RELEVANT_FLAGS)
    assert here.tensorflow and here.keras and here.numpy and re.fullmatch(r"[0-9a-f]{16}", here.fingerprint)
    assert dataclasses.replace(XEON_AMX).fingerprint == XEON_AMX.fingerprint  # stable: facts only
    changed = [dataclasses.replace(XEON_AMX, **kw) for kw in ({"keras": "9.9.9"}, {"tensorflow": "9.9"},
                                                               {"numpy": "9.0"}, {"cores": 4}, {"flags": ("avx2",)},
                                                               {"cpu": "other"}, {"onednn": False})]
    assert len({m.fingerprint for m in changed} | {XEON_AMX.fingerprint}) == len(changed) + 1
    assert "amx_bf16" in XEON_AMX.describe() and "no GPU" in EPYC.describe() and "8.0" in A100.describe()


@pytest.mark.parametrize("machine, mode, timed, skipped", [
    (XEON_AMX, "auto", ["float32", "mixed_bfloat16"], []),
    (EPYC, "auto", ["float32"], ["mixed_bfloat16"]),
    (EPYC, "all", ["float32", "mixed_bfloat16"], []),
    (A100, "auto", ["float32", "mixed_float16"], []),
    (P100, "auto", ["float32"], ["mixed_float16"]),
])
def test_candidates_follow_the_hardware(machine, mode, timed, skipped):
    got, why = candidates(machine, mode)
    assert got == timed and list(why) == skipped
    for text in why.values():
        assert "lacks" in text and "ZOO_DEVICE_POLICY=all" in text


# ------------------------------------------------------------------------------ the rule
@pytest.mark.parametrize("rates, chosen, reason", [
    ({"float32": 200, "mixed_bfloat16": 660}, "mixed_bfloat16", "3.30x as fast"),
    ({"float32": 800, "mixed_bfloat16": 720}, "float32", "0.90x float32, under the 1.15x margin"),
    ({"float32": 800, "mixed_bfloat16": 896}, "float32", "1.12x float32, under the 1.15x margin"),  # the margin case
    ({"float32": 800, "mixed_bfloat16": 800 * MIN_SPEEDUP}, "mixed_bfloat16", "1.15x as fast"),  # at the margin
    ({"float32": 100, "mixed_float16": 290}, "mixed_float16", "2.90x as fast"),
    ({"float32": 100}, "float32", "only candidate"),
    ({}, "float32", "only candidate"),
])
def test_decide_on_synthetic_calibrations(rates, chosen, reason):
    precision, why = decide(rates)
    assert precision == chosen and reason in why
    if chosen == "mixed_bfloat16":
        assert "results/runs/bf16-validation" in why


def test_an_unvalidated_precision_is_never_chosen():
    precision, why = decide({"float32": 100, "mixed_bfloat16": 300}, validated={"float32": "reference"})
    assert precision == "float32" and "not validated" in why
    assert decide({"float32": 100, "mixed_bfloat16": 130}, margin=1.5)[0] == "float32"


def test_resolve_policy_per_machine(policy_home):
    amx = FakeMeasure(float32=200, mixed_bfloat16=660)
    d = resolve_policy(TINY, machine=XEON_AMX, measure=amx)
    assert (d.precision, d.source) == ("mixed_bfloat16", "calibrated") and amx.calls == [
        ("resnet20 16x16x3 b4", ("float32", "mixed_bfloat16"), False)]
    assert d.record["images_per_s"] == {"float32": 200.0, "mixed_bfloat16": 660.0}
    assert "660 img/s" in d.evidence() and "calibrated now" in d.evidence()
    slower = FakeMeasure(float32=800, mixed_bfloat16=700)
    assert resolve_policy(TINY, machine=dataclasses.replace(XEON_AMX, cores=8), measure=slower).precision == "float32"
    epyc = FakeMeasure(float32=800, mixed_bfloat16=930)
    d = resolve_policy(TINY, machine=EPYC, measure=epyc)
    assert d.precision == "float32" and epyc.calls == []  # nothing to compare on a CPU without bfloat16
    assert "lacks native bfloat16" in d.record["reason"]
    gpu = FakeMeasure(float32=1000, mixed_float16=2600)
    d = resolve_policy(TINY, machine=A100, measure=gpu)
    assert d.precision == "mixed_float16" and gpu.calls[0][2] is True  # timed with XLA, the GPU's choice


def test_static_mode_and_a_bad_mode(policy_home, monkeypatch):
    fake = FakeMeasure(float32=1, mixed_bfloat16=9)
    monkeypatch.setenv("ZOO_DEVICE_POLICY", "static")
    d = resolve_policy(TINY, machine=XEON_AMX, measure=fake)
    assert (d.precision, d.source, fake.calls) == ("float32", "static", []) and "static" in d.evidence()
    monkeypatch.setenv("ZOO_DEVICE_POLICY", "fastest")
    with pytest.raises(DeviceError, match="ZOO_DEVICE_POLICY must be one of auto, static, all"):
        resolve_policy(TINY, machine=XEON_AMX, measure=fake)


# ------------------------------------------------------------------------------ the cache
def test_the_cache_is_reused_refreshed_and_invalidated(policy_home):
    fake = FakeMeasure(float32=200, mixed_bfloat16=660)
    assert policy_cache_file() == policy_home
    assert resolve_policy(TINY, machine=XEON_AMX, measure=fake).source == "calibrated"
    again = resolve_policy(TINY, machine=XEON_AMX, measure=fake)
    assert again.source == "cached" and again.precision == "mixed_bfloat16" and len(fake.calls) == 1
    assert again.cache == str(policy_home) and "cached, calibrated" in again.evidence()
    assert resolve_policy(TINY, machine=XEON_AMX, measure=fake, refresh=True).source == "calibrated"
    assert len(fake.calls) == 2
    for changed in ({"keras": "9.9.9"}, {"tensorflow": "2.99.0"}, {"flags": ("amx_bf16", "avx2")}):
        machine = dataclasses.replace(XEON_AMX, **changed)
        assert resolve_policy(TINY, machine=machine, measure=fake).source == "calibrated"
    assert len(fake.calls) == 5
    other = Workload("resnet20", (16, 16, 3), 8)
    assert resolve_policy(other, machine=XEON_AMX, measure=fake).source == "calibrated" and len(fake.calls) == 6
    assert resolve_policy(TINY, machine=XEON_AMX, measure=fake, jit_compile=True).source == "calibrated"
    assert resolve_policy(TINY, machine=XEON_AMX, measure=fake).source == "cached" and len(fake.calls) == 7
    stored = json.loads(policy_home.read_text())
    assert stored["format"] == 1 and len(stored["entries"]) == 6
    mine, others, note = device.cached_decisions(XEON_AMX)
    assert len(mine) == 3 and others == 3 and note is None


@pytest.mark.parametrize("content", ["{not json", '{"format": 1, "entries": []}', '["a list"]', ""])
def test_a_corrupt_cache_is_calibrated_over_with_a_note(policy_home, content):
    policy_home.parent.mkdir(parents=True)
    policy_home.write_text(content)
    fake = FakeMeasure(float32=200, mixed_bfloat16=660)
    d = resolve_policy(TINY, machine=XEON_AMX, measure=fake)
    assert d.source == "calibrated" and d.precision == "mixed_bfloat16" and len(fake.calls) == 1
    assert any("device-policy cache" in n and "unreadable" in n and "calibrating again" in n for n in d.notes)
    assert resolve_policy(TINY, machine=XEON_AMX, measure=fake).source == "cached"  # the file is good again
    assert not resolve_policy(TINY, machine=XEON_AMX, measure=fake).notes


def test_an_unwritable_keras_home_still_decides_and_warns_once(policy_home, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("KERAS_HOME", str(blocker / "keras"))  # below a file: no folder can be made
    fake = FakeMeasure(float32=200, mixed_bfloat16=660)
    first = resolve_policy(TINY, machine=XEON_AMX, measure=fake)
    second = resolve_policy(TINY, machine=XEON_AMX, measure=fake)
    assert first.precision == second.precision == "mixed_bfloat16" and len(fake.calls) == 1  # kept in-process
    assert first.cache is None and second.source == "cached"
    err = capsys.readouterr().err
    assert err.count("warning: cannot write the device-policy cache") == 1 and "KERAS_HOME" in err
    assert "Traceback" not in err


def test_a_busy_calibration_says_so(policy_home, monkeypatch):
    monkeypatch.setattr(device, "_load_average", lambda: 9.0)
    fake = FakeMeasure(float32=200, mixed_bfloat16=660)
    for source in ("calibrated", "cached"):
        d = resolve_policy(TINY, machine=XEON_AMX, measure=fake)
        assert d.source == source and d.record["load_average"] == 9.0
        assert any("load average 9.0 on 2 cores" in n and "--refresh" in n for n in d.notes)
    assert not resolve_policy(TINY, machine=dataclasses.replace(XEON_AMX, cores=16), measure=fake).notes


def test_a_failed_calibration_falls_back_to_float32(policy_home):
    def broken(*_args, **_kw):
        raise RuntimeError("cannot compute AddV2\nwith a long tensor dump")

    d = resolve_policy(TINY, machine=XEON_AMX, measure=broken)
    assert (d.precision, d.source) == ("float32", "fallback") and "RuntimeError: cannot compute AddV2" in d.notes[0]
    assert not policy_home.exists()  # a failure is not a decision to keep


# ------------------------------------------------------------------------------ the hook
def test_apply_training_settings_keeps_the_recipes_jit(capsys):
    recipe = load_recipe({"name": "r", "model": {"name": "resnet20"}, "train": {"jit_compile": True}})
    s = apply_training_settings(recipe, "cpu")  # ZOO_DEVICE_POLICY=static in the suite: no calibration
    assert s.jit_compile is True and s.precision == "float32" and keras.config.dtype_policy().name == "float32"
    assert s.policy["source"] == "static" and s.policy["record"] is None
    out = capsys.readouterr().out
    assert "device policy: cpu: float32" in out and "train.jit_compile=false" in out and "calibrating" not in out
    apply_training_settings(None, "cpu", verbose=False)
    assert capsys.readouterr().out == ""


def test_an_explicit_precision_skips_calibration(policy_home, monkeypatch, capsys):
    fake = FakeMeasure(float32=1, mixed_bfloat16=1)
    monkeypatch.setattr(calibration, "measure", fake)
    recipe = load_recipe({"name": "r", "model": {"name": "resnet20"}, "train": {"precision": "mixed_bfloat16"}})
    try:
        s = apply_training_settings(recipe, "cpu")
        assert s.precision == "mixed_bfloat16" and keras.config.dtype_policy().name == "mixed_bfloat16"
        assert fake.calls == [] and s.policy["source"] == "recipe" and not policy_home.exists()
        assert "train.precision=auto" in capsys.readouterr().out
    finally:
        keras.config.set_dtype_policy("float32")
    with pytest.raises(RecipeError, match="precision"):
        load_recipe({"name": "r", "model": {"name": "resnet20"}, "train": {"precision": "fp8"}})


def test_auto_calibrates_the_recipes_model_once_and_reports_it(policy_home, monkeypatch, capsys):
    fake = FakeMeasure(float32=200, mixed_bfloat16=660)
    monkeypatch.setattr(calibration, "measure", fake)
    monkeypatch.setattr(device, "detect_machine", lambda: XEON_AMX)
    recipe = load_recipe({"name": "r", "model": {"name": "resnet20", "input_shape": [16, 16, 3]},
                          "data": {"batch_size": 4}})
    try:
        s = apply_training_settings(recipe)
        assert s.precision == "mixed_bfloat16" == keras.config.dtype_policy().name
        out = capsys.readouterr().out
        assert "calibrating the device policy on resnet20 16x16x3 b4" in out
        assert "device policy: cpu: mixed_bfloat16" in out and "660 img/s" in out and str(policy_home) in out
        again = apply_training_settings(recipe, verbose=False)
        assert again.policy["source"] == "cached" and len(fake.calls) == 1
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
        model.compile(optimizer="sgd", loss="mse")
        facts = settings_facts(recipe, model, 1, again)  # what every report records
        policy = facts["device_settings"]["policy"]
        assert policy["precision"] == "mixed_bfloat16" and "660 img/s" in policy["evidence"]
        assert policy["record"]["fingerprint"] == XEON_AMX.fingerprint
        assert policy["record"]["images_per_s"] == {"float32": 200.0, "mixed_bfloat16": 660.0}
        json.dumps(facts, default=str)
    finally:
        keras.config.set_dtype_policy("float32")


# ------------------------------------------------------------------------------ calibration
def test_workloads_of_models_and_recipes():
    assert workload_for("resnet20").key == "resnet20 32x32x3 b128"
    assert workload_for("resnet20", image_size=64).input_shape == (64, 64, 3)
    assert workload_for("resnet50").batch_size == 32
    w = workload_for("resnet20", 8, {"input_shape": [16, 16, 3], "downsample": "max"})
    assert w.key == 'resnet20 16x16x3 b8 {"downsample": "max"}' and w.options == {"downsample": "max"}
    recipe = load_recipe({"name": "r", "model": {"name": "all_cnn_c"}, "data": {"batch_size": 64}})
    assert device.workload_of(recipe).key == "all_cnn_c 32x32x3 b64"
    with pytest.raises(ZooError, match="resnet20"):
        workload_for("resnet2O")
    with pytest.raises(ZooError):
        workload_for("resnet20", options={"downsample": "nonsense"})


def test_a_real_short_calibration(policy_home):
    """Real steps of each candidate on a tiny workload (mode all: bfloat16 too on any CPU): the
    structure of the result, not the speed."""
    kernel = Workload(KERNEL, (16, 16, 3), 8)
    machine = dataclasses.replace(device.detect_machine(), cores=99)
    d = resolve_policy(kernel, False, machine=machine, mode="all")
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    r, (reference, reduced) = d.record, device.CANDIDATES[machine.kind]
    assert d.source == "calibrated" and d.precision in (reference, reduced)
    assert set(r["images_per_s"]) == {reference, reduced} and all(v > 0 for v in r["images_per_s"].values())
    assert r["workload"] == "conv-kernel 16x16x3 b8" and r["jit_compile"] is False and r["machine"]["cores"] == 99
    assert r["steps"] == calibration.STEPS and r["warmup"] == calibration.WARMUP and r["seconds"] > 0
    assert dt.datetime.fromisoformat(r["date"]).tzinfo is not None
    assert (d.precision == reduced) == (r["images_per_s"][reduced] >= MIN_SPEEDUP * r["images_per_s"][reference])
    stored = json.loads(policy_home.read_text())["entries"]
    assert list(stored.values()) == [r]


# ------------------------------------------------------------------------------ static parts
def test_choose_settings_per_device():
    cpu = choose_settings("cpu")
    assert (cpu.jit_compile, cpu.precision, cpu.onednn, cpu.data_format) == (False, "float32", True, "channels_last")
    gpu = choose_settings("gpu")
    assert gpu.jit_compile is True and gpu.precision == "float32" and gpu.onednn is None
    assert choose_settings().device in ("cpu", "gpu")
    assert choose_settings("GPU").device == "gpu"
    with pytest.raises(ZooError, match="device"):
        choose_settings("tpu")


def test_resolve_precision_and_onednn_flag():
    assert resolve_precision("fp32") == "float32"
    assert resolve_precision("mixed", "cpu") == "mixed_bfloat16"
    assert resolve_precision("mixed", "gpu") == "mixed_float16"
    assert resolve_precision("mixed_float16", "cpu") == "mixed_float16"
    with pytest.raises(ZooError, match="precision must be one of"):
        resolve_precision("fp16")
    assert onednn_enabled({"TF_ENABLE_ONEDNN_OPTS": "0"}) is False
    assert onednn_enabled({"TF_ENABLE_ONEDNN_OPTS": "1"}) is True


def test_the_evidence_cites_files_not_figures():
    """No figure of any machine in the policy: measured claims name their results folder or file."""
    for line in CPU_EVIDENCE + GPU_EVIDENCE + tuple(ACCURACY.values()):
        assert not re.search(r"\d+(\.\d+)?\s*(x\b|img/s|%)|~\s*\d", line), line
        assert "results/" in line or "channels_last" in line or "reference" in line or "et al." in line, line
