"""Reports from plain data: history CSV, JSON, curves PNG and markdown."""
from __future__ import annotations

import json
import math

from zoo import report as zr


def _history(epochs: int = 3) -> list[dict]:
    return [{"epoch": e, "loss": 2.0 / e, "accuracy": 0.3 * e / epochs, "val_loss": 2.2 / e,
             "val_accuracy": 0.25 * e / epochs, "lr": 0.1, "epoch_time_s": 1.5, "train_images_per_s": 100.0 + e}
            for e in range(1, epochs + 1)]


def _report(history: list[dict]) -> dict:
    return {"run_name": "tiny-resnet20", "status": "completed", "epochs": len(history),
            "recipe": {"name": "tiny", "model": {"name": "resnet20"}},
            "model": {"name": "resnet20", "params_trainable": 270_000, "flops": 40_000_000},
            "data": {"name": "random", "num_train": 64, "num_validation": 16, "num_classes": 10},
            "final": {k: history[-1][k] for k in ("epoch", "loss", "val_accuracy")},
            "best": {"epoch": 3, "val_accuracy": history[-1]["val_accuracy"]},
            "evaluation": {"holdout": {"loss": 0.7, "accuracy": 0.25}},
            "history": history, "timing": {"train_time_s": 4.5, "train_images_per_s": 102.0},
            "settings": {"jit_compile": False}, "environment": {"python": "3.11"}}


def test_history_round_trip_is_typed_and_atomic(tmp_path):
    rows = _history()
    path = zr.write_history(rows, tmp_path / "history.csv")
    back = zr.read_history(path)
    assert back == rows and isinstance(back[0]["epoch"], int)
    assert [p.name for p in tmp_path.iterdir()] == ["history.csv"]  # no temporary files left
    assert zr.read_history(tmp_path / "missing.csv") == []


def test_history_with_new_columns_keeps_them(tmp_path):
    rows = [{"epoch": 1, "loss": 1.0}, {"epoch": 2, "loss": 0.5, "val_loss": 0.7}]
    back = zr.read_history(zr.write_history(rows, tmp_path / "h.csv"))
    assert back == rows


def test_json_is_strict_with_nan_as_null(tmp_path):
    import numpy as np

    path = zr.write_json({"loss": float("nan"), "acc": np.float32(0.5), "n": np.int64(3), "t": (1, 2)},
                         tmp_path / "r.json")
    text = path.read_text()
    assert "NaN" not in text
    assert json.loads(text) == {"loss": None, "acc": 0.5, "n": 3, "t": [1, 2]}


def test_run_report_writes_json_png_and_markdown_linking_png(tmp_path):
    history = _history()
    paths = zr.write_run_report(_report(history), tmp_path)
    assert {p.name for p in paths.values()} == {"report.json", "curves.png", "report.md"}
    assert paths["curves"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = paths["markdown"].read_text()
    assert "](curves.png)" in md and "tiny-resnet20: completed" in md
    assert "25.00%" in md and "| 3 |" in md  # final accuracy and the per-epoch table
    assert zr.read_json(paths["json"])["history"] == history


def test_run_report_without_history_has_no_curves(tmp_path):
    report = _report(_history()) | {"history": [], "status": "nan", "final": {}, "best": {}, "message": "nan!"}
    paths = zr.write_run_report(report, tmp_path)
    assert "curves" not in paths and not (tmp_path / "curves.png").exists()
    md = paths["markdown"].read_text()
    assert "curves.png" not in md and "> nan!" in md


def test_plot_curves_handles_missing_validation(tmp_path):
    history = [{"epoch": e, "loss": 1.0 / e, "accuracy": 0.1 * e} for e in (1, 2)]
    assert zr.plot_curves(history, tmp_path / "c.png").stat().st_size > 1000
    assert zr.plot_curves([], tmp_path / "none.png") is None


def test_eval_report(tmp_path):
    report = {"weights": "runs/x/model.keras", "split": "test", "model": {"name": "resnet20"},
              "data": {"name": "cifar10", "num_examples": 10000}, "metrics": {"loss": 0.4, "accuracy": 0.9},
              "timing": {"eval_time_s": 10.0, "images_per_s": 1000.0}, "environment": {}}
    paths = zr.write_eval_report(report, tmp_path)
    assert {p.name for p in paths.values()} == {"eval_report.json", "eval_report.md"}
    md = paths["markdown"].read_text()
    assert "90.00%" in md and "10000 images" in md
    assert math.isclose(zr.read_json(paths["json"])["metrics"]["accuracy"], 0.9)
