"""Deterministic, class-stratified selection of example indices.

All functions work on an array of integer labels in a canonical order (the
sorted file list for folders, storage order for arrays and
tensorflow-datasets) and return positions into it, so the same seed always
selects the same examples whatever order the files were listed in.
"""

from __future__ import annotations

import numbers

import numpy as np

# Independent random streams derived from the user's seed.
_SUBSET_STREAM = 0
_VALIDATION_STREAM = 1
_ORDER_STREAM = 2


def validation_count(validation: float | int, num_examples: int) -> int:
    """Number of held-out examples for ``validation`` (a fraction in [0, 1) or a count)."""
    if isinstance(validation, bool) or not isinstance(validation, numbers.Real):
        raise TypeError(f"validation must be a fraction or a count, got {validation!r}")
    if isinstance(validation, numbers.Integral):
        if not 0 <= validation < num_examples:
            raise ValueError(
                f"validation={validation} examples must be >= 0 and smaller than "
                f"the {num_examples} examples available; hold out fewer (a count below "
                f"{num_examples}, or a fraction such as validation=0.1)"
            )
        return int(validation)
    if not 0.0 <= validation < 1.0:
        raise ValueError(f"validation fraction must be in [0, 1), got {validation}")
    return int(round(validation * num_examples))


def allocate_per_class(class_counts: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` across classes proportionally to ``class_counts``.

    Uses the largest-remainder method, so the result sums exactly to
    ``total`` and never exceeds a class's count.
    """
    class_counts = np.asarray(class_counts, dtype=np.int64)
    num_examples = int(class_counts.sum())
    if num_examples == 0 or total == 0:
        return np.zeros_like(class_counts)
    quotas = class_counts * (total / num_examples)
    allocation = np.floor(quotas).astype(np.int64)
    shortfall = total - int(allocation.sum())
    # Stable sort: ties go to the lower class index, keeping the result deterministic.
    by_remainder = np.argsort(-(quotas - allocation), kind="stable")
    allocation[by_remainder[:shortfall]] += 1
    return np.minimum(allocation, class_counts)


def _positions_by_class(labels: np.ndarray) -> list[np.ndarray]:
    labels = np.asarray(labels)
    classes = np.unique(labels)
    return [np.flatnonzero(labels == c) for c in classes]


def _take_per_class(labels: np.ndarray, total: int, rng: np.random.Generator) -> np.ndarray:
    """Choose ``total`` positions, stratified by class, with ``rng``."""
    groups = _positions_by_class(labels)
    allocation = allocate_per_class(np.array([len(g) for g in groups]), total)
    chosen = [rng.permutation(g)[:k] for g, k in zip(groups, allocation)]
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)


def stratified_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted positions of a seeded, class-stratified subset of ``size`` examples."""
    if size <= 0:
        raise ValueError(f"limit must be a positive number of examples, got {size}")
    if size >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng([seed, _SUBSET_STREAM])
    return _take_per_class(labels, size, rng)


def stratified_split(
    labels: np.ndarray, validation: float | int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split positions into ``(train, validation)``, stratified per class.

    Each class contributes to the validation set in proportion to its size.
    Both outputs are returned in a seeded random order so that a dataset
    stored class by class (e.g. an image folder) is well mixed even when
    the training pipeline's shuffle buffer is smaller than the dataset.
    """
    labels = np.asarray(labels)
    total = validation_count(validation, len(labels))
    held_out = _take_per_class(labels, total, np.random.default_rng([seed, _VALIDATION_STREAM]))
    train = np.setdiff1d(np.arange(len(labels)), held_out, assume_unique=True)
    order_rng = np.random.default_rng([seed, _ORDER_STREAM])
    return order_rng.permutation(train), order_rng.permutation(held_out)
