"""The device policy (zoo.training.device): settings per device, the training hook, and its evidence."""
from __future__ import annotations

import csv
import re
from pathlib import Path

import keras
import pytest

from zoo.errors import ZooError
from zoo.training.device import (CPU_EVIDENCE, GPU_EVIDENCE, apply_training_settings, choose_settings,
                                 onednn_enabled, resolve_precision)
from zoo.training.recipe import RecipeError, load_recipe

ROOT = Path(__file__).resolve().parent.parent


def test_choose_settings_per_device():
    cpu = choose_settings("cpu")
    assert (cpu.jit_compile, cpu.precision, cpu.onednn, cpu.data_format) == (False, "float32", True, "channels_last")
    assert any("sweep-resnet20.csv" in e for e in cpu.evidence)
    gpu = choose_settings("gpu")
    assert gpu.jit_compile is True and gpu.precision == "mixed_float16" and gpu.onednn is None
    assert choose_settings().device in ("cpu", "gpu")
    assert choose_settings("GPU").device == "gpu"
    with pytest.raises(ZooError, match="device"):
        choose_settings("tpu")


def test_resolve_precision_and_onednn_flag():
    assert resolve_precision("fp32") == "float32"
    assert resolve_precision("mixed", "cpu") == "mixed_bfloat16" and resolve_precision("mixed", "gpu") == "mixed_float16"
    assert resolve_precision("mixed_float16", "cpu") == "mixed_float16"
    with pytest.raises(ZooError, match="precision must be one of"):
        resolve_precision("fp16")
    assert onednn_enabled({"TF_ENABLE_ONEDNN_OPTS": "0"}) is False
    assert onednn_enabled({"TF_ENABLE_ONEDNN_OPTS": "1"}) is True


def test_apply_training_settings_keeps_the_recipes_jit(capsys):
    recipe = load_recipe({"name": "r", "model": {"name": "resnet20"}, "train": {"jit_compile": True}})
    s = apply_training_settings(recipe, "cpu")
    assert s.jit_compile is True and s.precision == "float32" and keras.config.dtype_policy().name == "float32"
    out = capsys.readouterr().out
    assert "settings for cpu" in out and "train.jit_compile=false" in out
    apply_training_settings(None, "cpu", verbose=False)
    assert capsys.readouterr().out == ""


def test_recipe_precision_overrides_the_device_choice(capsys):
    recipe = load_recipe({"name": "r", "model": {"name": "resnet20"}, "train": {"precision": "mixed_bfloat16"}})
    try:
        s = apply_training_settings(recipe, "cpu")
        assert s.precision == "mixed_bfloat16" and keras.config.dtype_policy().name == "mixed_bfloat16"
        assert "train.precision=auto" in capsys.readouterr().out
    finally:
        keras.config.set_dtype_policy("float32")
    with pytest.raises(RecipeError, match="precision"):
        load_recipe({"name": "r", "model": {"name": "resnet20"}, "train": {"precision": "fp8"}})


def test_cpu_defaults_agree_with_the_recorded_sweep():
    """The evidence cites the committed idle sweep, and that sweep supports choose_settings('cpu'):
    XLA and oneDNN-off train slower than the default."""
    cited = {m for e in CPU_EVIDENCE for m in re.findall(r"results/benchmarks/[\w.-]+", e)}
    assert "results/benchmarks/sweep-resnet20.csv" in cited
    for name in cited:
        assert (ROOT / name).is_file(), name
    rows = {r["config"]: float(r["samples_per_sec"]) for r in csv.DictReader((ROOT / "results/benchmarks/"
                                                                              "sweep-resnet20.csv").open())}
    default = rows["float32 jit=False b128"]
    assert rows["float32 jit=True b128"] < default and rows["float32 jit=False b128 oneDNN off"] < default


def test_the_evidence_cites_files_not_figures():
    """No figure of one machine in the policy: each measured claim names its results file."""
    for line in CPU_EVIDENCE + GPU_EVIDENCE:
        assert not re.search(r"\d+(\.\d+)?\s*(x\b|img/s|%)|~\s*\d", line), line
        assert "results/benchmarks/" in line or "channels_last" in line, line
