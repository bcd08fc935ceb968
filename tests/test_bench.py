"""Benchmarks: the result fields, CSV records, the pipeline bench, peers, the worker, the CLI, bad input.

The device policy (choose_settings, resolve_policy, apply_training_settings) is tested in
tests/test_device.py; `zoo bench --settings [--refresh]` here.
"""
from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo.bench as zb
from zoo import cli
from zoo.bench import machine, worker
from zoo.bench.checks import BenchError, thread_env
from zoo.bench.sweeps import sweep_configs
from zoo.errors import RunFailedError, ZooError
from zoo.flops import count_flops, count_params
from zoo.layers.ops import fused_batch_norm, is_fused
from zoo.models.registry import build
from zoo.training.device import choose_settings

ENV_COLUMNS = ("date", "machine", "cpu", "cores", "device", "python", "tensorflow", "keras", "onednn")


@pytest.fixture(autouse=True)
def bench_cache(tmp_path, monkeypatch):
    """Keep the matmul-peak cache out of the home directory."""
    monkeypatch.setenv("ZOO_BENCH_CACHE", str(tmp_path / "bench-cache"))


@pytest.fixture(scope="module")
def tiny_result():
    return zb.bench("resnet20", "train", batch_size=4, steps=2, warmup=1, peak_gflops=100.0)


# ------------------------------------------------------------------------------------ bench
def test_bench_fields_are_sane(tiny_result):
    r = tiny_result
    assert r["name"] == "resnet20" and r["mode"] == "train" and r["batch_size"] == 4 and r["steps"] == 2
    assert r["train_samples_per_sec"] == r["samples_per_sec"] > 0
    assert r["samples_per_sec"] == pytest.approx(4 / (r["step_ms_median"] / 1e3))
    assert 0 < r["step_ms_min"] <= r["step_ms_median"] <= r["step_ms_p90"] <= r["step_ms_max"]
    assert len(r["step_times_ms"]) == 2
    assert r["params"] == 269_722 and r["flops"] == count_flops(build("resnet20"))
    assert r["flops_per_sample"] == 6 * r["flops"]  # training: 3 passes x 2 FLOPs per multiply-add
    assert r["achieved_gflops"] == pytest.approx(r["flops_per_sample"] * r["samples_per_sec"] / 1e9)
    assert r["peak_gflops"] == 100.0 and r["peak_fraction"] == pytest.approx(r["achieved_gflops"] / 100.0)
    assert r["peak_rss_mb"] > 100 and r["dtype_policy"] == "float32" and r["jit_compile"] is False
    assert "multiply-adds" in r["flops_convention"]
    for key in ("cpu", "cores", "tensorflow", "keras", "python", "date"):
        assert r["environment"][key], key


def test_bench_inference_and_mixed_precision():
    r = zb.bench("resnet20", "infer", batch_size=2, precision="mixed", steps=1, warmup=1, peak_gflops=False,
                 input_shape=(16, 16, 3))
    assert r["infer_samples_per_sec"] > 0 and "train_samples_per_sec" not in r
    assert r["dtype_policy"] in ("mixed_bfloat16", "mixed_float16")
    assert r["flops_per_sample"] == 2 * r["flops"] and r["peak_fraction"] is None
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored


@pytest.mark.parametrize("kwargs, match", [
    ({"name": "resnet2O"}, "resnet20"),
    ({"name": "resnet20", "mode": "fit"}, "mode must be one of train, infer"),
    ({"name": "resnet20", "precision": "fp16"}, "precision must be one of"),
    ({"name": "resnet20", "batch_size": 0}, "batch_size must be an integer >= 1"),
    ({"name": "resnet20", "batch_size": 2.5}, "batch_size must be an integer"),
    ({"name": "resnet20", "steps": 0}, "steps must be an integer >= 1"),
    ({"name": "resnet20", "warmup": -1}, "warmup must be"),
    ({"name": "resnet20", "jit_compile": "maybe"}, "jit_compile must be"),
    ({"name": "resnet20", "stem": "deep"}, "fixed 3x3 stem"),
    ({"name": "resnet20", "widht": 3}, "widht"),
])
def test_bad_input_is_refused_clearly(kwargs, match):
    with pytest.raises(ZooError, match=match):
        zb.bench(**kwargs, peak_gflops=False)


def test_bad_input_to_the_other_benchmarks():
    with pytest.raises(ZooError, match="peer groups"):
        zb.bench_peers(["vgg16"], record=False)
    with pytest.raises(ZooError, match="precision"):
        zb.bench_peers(["resnet20"], precision="int8", record=False)
    with pytest.raises(ZooError, match="batch_size"):
        zb.bench_pipeline("embedded", batch_size=0)
    with pytest.raises(BenchError, match="unknown augmentation"):
        zb.bench_pipeline("embedded", augment=("mixup",))
    with pytest.raises(ZooError, match="repeats"):
        zb.sweep("resnet20", repeats=0, record=False)
    with pytest.raises(ZooError):
        zb.sweep("no_such_model", record=False)
    with pytest.raises(ZooError, match="batch_size"):
        zb.sweep("resnet20", batch_sizes=(64, 0), record=False)
    with pytest.raises(ZooError, match="threads"):
        zb.bench_peers(["resnet20"], threads=0, torch=False, record=False)


def test_sweep_measures_the_alternatives_to_the_defaults():
    cpu = {label: env for label, _, env in sweep_configs("cpu", 128, (64, 128, 256))}
    assert list(cpu) == ["float32 jit=False b128", "float32 jit=True b128", "float32 jit=auto b128",
                         "mixed_bfloat16 jit=False b128", "float32 jit=False b128 oneDNN off",
                         "float32 jit=False b128 inter_op=1", "float32 jit=False b64", "float32 jit=False b256"]
    assert cpu["float32 jit=False b128 oneDNN off"] == {"TF_ENABLE_ONEDNN_OPTS": "0"}
    default = choose_settings("cpu")
    assert f"{default.precision} jit={default.jit_compile} b128" in cpu
    gpu = [label for label, _, _ in sweep_configs("gpu", 256, (256,))]
    assert "mixed_float16 jit=True b256" in gpu and not any("oneDNN" in label for label in gpu)
    assert thread_env(1) == {"TF_NUM_INTRAOP_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                                 "TF_NUM_INTEROP_THREADS": "1"}


# -------------------------------------------------------------------------------------- CSV
def test_csv_appends_rows_with_the_environment(tiny_result, tmp_path):
    path = tmp_path / "b.csv"
    zb.append_csv(tiny_result, path)
    zb.append_csv({**tiny_result, "extra_column": 7}, path)
    with path.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    for col in ENV_COLUMNS + ("name", "mode", "samples_per_sec", "step_ms_median", "step_ms_p90", "batch_size",
                              "precision", "jit_compile", "params", "flops", "peak_fraction", "peak_rss_mb"):
        assert rows[0][col] != "", col
    assert float(rows[1]["samples_per_sec"]) == pytest.approx(tiny_result["samples_per_sec"], rel=1e-5)
    assert rows[0]["extra_column"] == "" and rows[1]["extra_column"] == "7"  # header widened, old row kept
    assert zb.default_csv("resnet20").as_posix() == "results/benchmarks/resnet20.csv"


def test_cli_bench_json_and_csv(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(machine, "measure_matmul_peak", lambda **_: {"gflops": 50.0})
    path = tmp_path / "cli.csv"
    assert cli.main(["bench", "resnet20", "--batch-size", "2", "--steps", "1", "--warmup", "1", "--json",
                     "--csv", str(path), "-o", "input_shape=[16,16,3]"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["batch_size"] == 2 and out["build_options"] == {"input_shape": [16, 16, 3]} and out["peak_gflops"] == 50
    assert path.exists() and len(path.read_text().splitlines()) == 2
    assert cli.main(["bench", "resnet2O", "--no-csv"]) == 2  # bad input: one line, exit 2
    err = capsys.readouterr().err
    assert "did you mean" in err.lower() and "Traceback" not in err and err.startswith("zoo bench: error:")
    assert cli.main(["bench", "resnet20", "--mode", "infer", "--batch-size", "0", "--no-csv"]) == 2
    assert "batch_size must be" in capsys.readouterr().err
    assert cli.main(["bench", "--no-csv"]) == 2
    assert "name a model" in capsys.readouterr().err
    assert cli.main(["bench", "--pipeline", "--augment", "mixup", "--model", "none", "--no-csv"]) == 2
    assert "unknown augmentation" in capsys.readouterr().err


def test_cli_bench_settings_shows_and_refreshes_the_policy(tmp_path, monkeypatch, capsys):
    from zoo.training import calibration, device

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    monkeypatch.setenv("ZOO_DEVICE_POLICY", "auto")
    calls = []

    def fake(workload, precisions, jit_compile=False):
        calls.append(workload.key)
        return {p: 100.0 * (i + 1) for i, p in enumerate(precisions)}

    monkeypatch.setattr(calibration, "measure", fake)
    assert cli.main(["bench", "--settings", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mode"] == "auto" and out["machine"]["fingerprint"] == device.detect_machine().fingerprint
    assert out["cache"] == str(tmp_path / "kh" / "zoo" / "device-policy.json") and out["decisions"] == []
    assert out["static"]["device"] in ("cpu", "gpu") and out["static"]["evidence"] and calls == []
    args = ["bench", "resnet20", "--settings", "--refresh", "--batch-size", "4", "-o", "input_shape=[16,16,3]"]
    assert cli.main(args) == 0
    text = capsys.readouterr().out
    assert calls == ["resnet20 16x16x3 b4"] and "refreshed: " in text
    assert "calibrated now on resnet20 16x16x3 b4" in text
    assert cli.main(["bench", "--settings"]) == 0
    text = capsys.readouterr().out
    assert "machine:  " in text and "1 decision(s) for this machine" in text and "resnet20 16x16x3 b4 jit=" in text
    assert len(calls) == 1  # shown from the cache, not measured again
    assert cli.main(["bench", "resnet20", "--refresh", "--no-csv"]) == 2
    assert "--refresh goes with --settings" in capsys.readouterr().err
    monkeypatch.setenv("ZOO_DEVICE_POLICY", "static")
    assert cli.main(["bench", "--settings"]) == 0
    assert "ZOO_DEVICE_POLICY=static" in capsys.readouterr().out
    assert cli.main(args) == 0 and len(calls) == 2  # an explicit --refresh measures even then


# ------------------------------------------------------------------------------- matmul peak
def test_matmul_peak_is_measured_once_per_machine(tmp_path):
    first = zb.measure_matmul_peak(size=256, repeats=2)
    assert first["gflops"] > 0 and not first["cached"] and first["size"] == 256
    again = zb.measure_matmul_peak(size=256, repeats=2)
    assert again["cached"] and again["gflops"] == first["gflops"]
    assert not zb.measure_matmul_peak(size=256, repeats=1, refresh=True)["cached"]
    stored = json.loads((tmp_path / "bench-cache" / "matmul_peak.json").read_text())
    assert first["key"] in stored and "tf " in first["key"]


# ---------------------------------------------------------------------------------- pipeline
def test_pipeline_bench_delivers_batches():
    r = zb.bench_pipeline("embedded", batch_size=32, augment=("crop_pad4", "flip"), batches=5, limit=160,
                          model_samples_per_sec=10.0)
    assert r["images_per_sec"] > 0 and r["batches"] == 5 and r["image_shape"] == [32, 32, 3]
    assert r["warmup_batches"] == 160 // 32 + 5  # one epoch fills the cache, then five more
    assert r["ratio_to_model"] == pytest.approx(r["images_per_sec"] / 10.0)


# ------------------------------------------------------------------------- fused batch norm
def test_fused_batch_norm_matches_keras():
    x = tf.constant(np.random.default_rng(0).normal(2, 3, (4, 5, 5, 6)).astype("float32"))
    ours, theirs = fused_batch_norm(momentum=0.9, epsilon=1e-5), keras.layers.BatchNormalization(
        momentum=0.9, epsilon=1e-5)
    assert isinstance(ours, keras.layers.BatchNormalization) and is_fused(ours) and not is_fused(theirs)
    for layer in (ours, theirs):
        layer.build(x.shape)
        layer.gamma.assign(np.linspace(0.5, 2, 6))
        layer.beta.assign(np.linspace(-1, 1, 6))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        outs = [layer(x, training=True) for layer in (ours, theirs)]
        losses = [tf.reduce_sum(y * tf.sin(y)) for y in outs]
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-5)
    for a, b in zip(tape.gradient(losses[0], [x, ours.gamma, ours.beta]),
                    tape.gradient(losses[1], [x, theirs.gamma, theirs.beta])):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ours.moving_mean, theirs.moving_mean, atol=1e-6)
    np.testing.assert_allclose(ours.moving_variance, theirs.moving_variance, atol=1e-5)  # biased, as Keras
    np.testing.assert_allclose(ours(x, training=False), theirs(x, training=False), atol=1e-5)


def test_zoo_models_use_the_fused_layer():
    model = build("resnet20")
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert bns and all(isinstance(layer, keras.layers.BatchNormalization) and is_fused(layer) for layer in bns)


# ------------------------------------------------------------------------------------- peers
def test_torch_resnet20_is_the_same_network():
    torch_resnet = pytest.importorskip("zoo.bench.torch_resnet")
    model = torch_resnet.resnet20()
    ours = build("resnet20")
    assert sum(p.numel() for p in model.parameters()) == count_params(ours) == 269_722
    runner = torch_resnet.TorchRunner("resnet20", batch_size=2)
    assert len(runner.measure(1)) == 1


def test_peers_in_worker_processes_write_ratios(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.setattr(machine, "measure_matmul_peak", lambda **_: {"gflops": 100.0})
    path = tmp_path / "peers.csv"
    rows = zb.bench_peers(["resnet20"], steps=1, warmup=1, repeats=2, batch_sizes={"resnet20": 2}, csv_path=path,
                          log=lambda s: None)
    assert [r["impl"] for r in rows] == ["zoo", "torch"]
    assert rows[0]["vs_zoo"] == 1.0 and rows[1]["vs_zoo"] == pytest.approx(1 / rows[1]["zoo_vs"])
    assert rows[0]["params"] == rows[1]["params"] == 269_722 and rows[1]["flops"] == rows[0]["flops"]
    assert all(r["repeats"] == 2 and len(r["samples_per_sec_rounds"]) == 2 for r in rows)
    with path.open() as f:
        written = list(csv.DictReader(f))
    assert len(written) == 2 and {"vs_zoo", "group", "impl_label", "cpu", "tensorflow"} <= set(written[0])


# ------------------------------------------------------------------------------------ worker
def test_worker_reports_a_bad_spec_and_its_usage(capfd):
    assert worker.serve(json.dumps({"impl": "zoo", "name": "no_such_model"})) == 1
    line = capfd.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(worker.PREFIX)
    payload = json.loads(line[len(worker.PREFIX):])
    assert payload["event"] == "error" and "no_such_model" in payload["error"]
    assert worker.main([]) == 2


def test_a_failing_worker_is_a_failed_run():
    with pytest.raises(RunFailedError, match="no_such_model"):
        worker.Worker({"impl": "zoo", "name": "no_such_model"}, timeout=300)


def test_worker_modules_import_no_tensorflow():
    """A PyTorch peer's process must hold PyTorch alone: the worker's own imports are TF-free."""
    modules = ["zoo.bench", "zoo.bench.worker", "zoo.bench.checks", "zoo.bench.timing", "zoo.runtime"]
    code = f"import sys; import {', '.join(modules)}; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.split() == ["False", "False"]


# ---------------------------------------------------------------------------- no machine figures
FIGURE = re.compile(r"(\d+(\.\d+)?\s*x (slower|faster))|(~\s*\d+)|(\d+\s*img/s)|\b(a (fifth|quarter|third))\b",
                    re.IGNORECASE)


def test_bench_code_quotes_no_measured_figures():
    root = Path(__file__).resolve().parent.parent / "zoo"
    for path in [*sorted((root / "bench").glob("*.py")), root / "cli" / "bench.py", root / "training" / "device.py",
                 root / "training" / "calibration.py"]:
        hits = [m.group(0) for m in FIGURE.finditer(path.read_text())]
        assert not hits, f"{path}: {hits} (name the results/benchmarks/ file instead)"


def test_peers_best_marks_what_zoo_train_picks_and_compares_it_with_each_peers_best():
    from zoo.bench.peers import BEST, PEER_GROUPS, mark_default

    assert set(PEER_GROUPS) >= {"resnet20", "all_cnn_c", "resnet50"} and BEST == ("fp32", "mixed")
    row = lambda label, impl, policy, rate: {"impl_label": label, "name": "resnet20", "impl": impl,  # noqa: E731
                                             "build_options": {}, "dtype_policy": policy, "samples_per_sec": rate}
    rows = [row("zoo resnet20 [float32]", "zoo", "float32", 800.0),
            row("zoo resnet20 [mixed_bfloat16]", "zoo", "mixed_bfloat16", 1000.0),
            row("torch resnet20 [float32]", "torch", "float32", 700.0),
            row("torch resnet20 [mixed_bfloat16]", "torch", "mixed", 1250.0)]
    mark_default(rows, "float32")  # a machine where the policy kept float32
    assert [r["zoo_default"] for r in rows] == [True, False, False, False]
    assert rows[2]["default_vs"] == rows[3]["default_vs"] == pytest.approx(800 / 1250)
    assert rows[0]["default_vs"] == pytest.approx(0.8)  # the zoo's own best is bfloat16 here
    mark_default(rows, "mixed_bfloat16")
    assert [r["zoo_default"] for r in rows] == [False, True, False, False]
    assert rows[3]["default_vs"] == pytest.approx(0.8)
