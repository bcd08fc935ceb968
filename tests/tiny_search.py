"""Shared by the search and study tests: a tiny recipe (All-CNN-C at 16x16 on 200 embedded images)."""
from __future__ import annotations

import os
from pathlib import Path

import yaml

from zoo.training import load_recipe

ROOT = Path(__file__).resolve().parent.parent
TINY = {
    "name": "tiny",
    "description": "All-CNN-C at 16x16 on 200 embedded images, 1 epoch (tests only)",
    "model": {"name": "all_cnn_c"},
    "data": {"source": "embedded", "limit": 200, "validation": 50, "batch_size": 32, "image_size": 16,
             "normalization": "per_channel", "augment": []},
    "optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.9},
    "schedule": {"name": "constant"},
    "train": {"epochs": 1, "seed": 0, "progress": "none"},
    "output": {"tensorboard": False},
}
FAST = {"latency_repeats": 5, "verbose": False}
POOL1 = {"pool1": ["max", "conv"]}  # 2 configurations: max (81.8 M FLOPs at 16x16) and conv (65.8 M)


def write_recipe(path: Path, **sections) -> Path:
    """TINY with ``sections`` merged in (``train={"epochs": 3}``), as a YAML file at ``path``."""
    recipe = {k: ({**v, **sections.get(k, {})} if isinstance(v, dict) else v) for k, v in TINY.items()}
    path.write_text(yaml.safe_dump(recipe))
    return path


def model_recipe(name: str, **options):
    return load_recipe({"name": "t", "description": "t", "model": {"name": name, **options}})


def subprocess_env() -> dict[str, str]:
    """The environment for a ``python -m zoo ...`` child that imports this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env
