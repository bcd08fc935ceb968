"""Training: recipes, the one fit path, run directories, evaluation and the device policy.

>>> from zoo.training import train
>>> result = train("embedded", ["train.epochs=1"], run_dir="runs/quick")
"""
from zoo.training.run import RunResult, evaluate, train

__all__ = ["RunResult", "evaluate", "train"]
