"""``zoo bench --pipeline``: images/s delivered by :func:`zoo.data.make_pipeline`, no model."""
from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

import zoo.data as zdata
from zoo.bench.checks import BenchError, as_bench_error, check_common
from zoo.bench.machine import environment_row
from zoo.runtime import peak_rss_mb
from zoo.data.augment import check_augmentations

__all__ = ["bench_pipeline"]


def _time_batches(it: Iterator[Any], batches: int) -> tuple[list[float], Any]:
    times, images = [], None
    for _ in range(batches):
        t0 = time.perf_counter()
        images, _labels = next(it)
        times.append(time.perf_counter() - t0)
    return times, images


def bench_pipeline(source: Any = "embedded", batch_size: int = 128, augment: Sequence[str] = ("crop_pad4", "flip"),
                   *, batches: int = 200, warmup: int | None = None, limit: int | None = None,
                   image_size: int | None = None, cache: bool = True, seed: int = 0, data_dir: str | None = None,
                   model_samples_per_sec: float | None = None) -> dict[str, Any]:
    """Images/s delivered by :func:`zoo.data.make_pipeline` for ``source`` (training mode:
    shuffle, seeded ``augment``, batching, float conversion, prefetch), repeated, iterated
    without a model. The first epoch (decoding, filling the cache) and ``warmup`` more batches
    are untimed; then ``batches`` batches are timed.

    ``model_samples_per_sec`` (e.g. :func:`zoo.bench.bench` of resnet20) adds ``ratio_to_model``
    — the pipeline must deliver several times what the model consumes, since in training both
    share the CPU."""
    check_common("train", batch_size, batches, 0 if warmup is None else warmup)
    with as_bench_error():  # zoo.data raises plain ValueError / FileNotFoundError
        check_augmentations(augment)
        splits = zdata.load(source, split="train", validation=0, seed=seed, limit=limit, data_dir=data_dir)
    info = splits.info
    if info.num_train < batch_size:
        raise BenchError(f"{info.name} has {info.num_train} training images, fewer than one batch of {batch_size}.")
    ds = zdata.make_pipeline(splits.train, batch_size=batch_size, training=True, augment=tuple(augment),
                             image_size=image_size, seed=seed, cache=cache).repeat()
    warmup = info.num_train // batch_size + 5 if warmup is None else warmup
    it = iter(ds)
    start = time.perf_counter()
    for _ in range(warmup):
        next(it)
    warmup_s = time.perf_counter() - start
    times, images = _time_batches(it, batches)
    ordered = sorted(times)
    result = {
        "name": "pipeline", "source": info.name, "batch_size": batch_size, "augment": list(augment),
        "image_shape": list(images.shape[1:]), "cache": cache, "batches": batches, "warmup_batches": warmup,
        "warmup_s": warmup_s, "images_per_sec": batch_size * batches / sum(times),
        "batch_ms_median": 1e3 * ordered[len(times) // 2],
        "batch_ms_p90": 1e3 * ordered[min(len(times) - 1, int(0.9 * len(times)))],
        "num_train": info.num_train, "tf_data_autotune": True, "environment": environment_row(),
        "peak_rss_mb": peak_rss_mb(),
    }
    if model_samples_per_sec:
        result["model_samples_per_sec"] = float(model_samples_per_sec)
        result["ratio_to_model"] = result["images_per_sec"] / float(model_samples_per_sec)
    return result
