"""A recipe's data as the fit path consumes it: batched train and validation pipelines."""
from __future__ import annotations

import contextlib
import math
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import tensorflow as tf

import zoo.data as zdata
from zoo.errors import ZooError
from zoo.training.recipe import Recipe


class DataError(ZooError):
    """A data source that cannot be read as the recipe asks (missing, malformed, too small)."""


# zoo.data.load's keyword arguments -> the recipe fields that set them, so a message's fix names
# what a `zoo train` user types ("pass image_size=N" -> "pass data.image_size=N")
RECIPE_FIELDS = {"image_size": "data.image_size", "validation": "data.validation", "limit": "data.limit",
                 "split": "data.split"}
_LOAD_ARGUMENT = re.compile(rf"(?<![\w.])({'|'.join(RECIPE_FIELDS)})=")
_SKIPPED_WARNING = r"skipped \d+ corrupt or unreadable"  # zoo.data.folder's warning; said here once instead


def recipe_terms(message: str) -> str:
    """``message`` of :mod:`zoo.data` with its ``load()`` arguments named as recipe fields."""
    return _LOAD_ARGUMENT.sub(lambda m: f"{RECIPE_FIELDS[m.group(1)]}=", message)


@contextlib.contextmanager
def data_errors(source: str) -> Iterator[None]:
    """Turn :mod:`zoo.data`'s errors (plain ``ValueError``/``OSError``: that package imports
    nothing of the zoo) into a one-line :class:`DataError` naming the source, at the one boundary."""
    try:
        yield
    except DataError:
        raise
    except (ValueError, OSError) as err:
        text = " ".join(str(err).split()) or type(err).__name__
        raise DataError(f"data.source={source!r}: {recipe_terms(text)}") from err


def load_source(source: str, **options: Any) -> Any:
    """``zoo.data.load(source, **options)`` behind :func:`data_errors`; images skipped as
    unreadable are said in one line of the run's log (the count is ``info.skipped_files``, which
    report.json keeps)."""
    with data_errors(source), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_SKIPPED_WARNING, category=UserWarning)
        splits = zdata.load(source, **options)
    skipped = splits.info.skipped
    if skipped:
        shown = ", ".join(skipped[:5]) + (", ..." if len(skipped) > 5 else "")
        print(f"zoo.train: data.source={source!r}: skipped {len(skipped)} corrupt or unreadable image "
              f"file(s): {shown}", flush=True)
    return splits


class Data(NamedTuple):
    """The training and validation pipelines of a recipe and what the fit path needs to know."""

    train: tf.data.Dataset
    validation: tf.data.Dataset | None
    info: Any  # zoo.data.DatasetInfo
    raw_train: tf.data.Dataset
    images_per_epoch: int
    steps_per_epoch: int


def one_hot(ds: tf.data.Dataset, num_classes: int) -> tf.data.Dataset:
    """``(x, y)`` batches with ``y`` one-hot (what label smoothing needs)."""
    return ds.map(lambda x, y: (x, tf.one_hot(y, num_classes)), num_parallel_calls=tf.data.AUTOTUNE)


def pipeline(recipe: Recipe, ds: tf.data.Dataset, num_classes: int, training: bool,
             first_epoch: int | None = None, stop_epoch: int | None = None) -> tf.data.Dataset:
    """The recipe's batched pipeline over ``ds``: augmentation in training, one-hot labels when
    the recipe smooths them; with ``first_epoch``, the endless epoch-keyed training stream
    (:func:`zoo.data.make_pipeline`) that a resumed run continues exactly."""
    d = recipe.data
    out = zdata.make_pipeline(ds, batch_size=d.batch_size, training=training,
                              augment=tuple(d.augment if training else d.eval_augment), image_size=d.image_size,
                              seed=recipe.train.seed, cache=d.cache, shuffle_buffer=d.shuffle_buffer,
                              first_epoch=first_epoch, stop_epoch=stop_epoch)
    return one_hot(out, num_classes) if recipe.train.label_smoothing > 0 else out


def data_dirs(recipe: Recipe) -> dict[str, str | None]:
    """``data_dir`` and ``manual_dir`` with ``~`` expanded."""
    return {k: str(Path(v).expanduser()) if v else None
            for k, v in (("data_dir", recipe.data.data_dir), ("manual_dir", recipe.data.manual_dir))}


def load_splits(recipe: Recipe, split: str | None = None, validation: int | float | None = None,
                limit: int | None = None) -> Any:
    """``zoo.data.load`` of the recipe's source (its split, validation and seed unless given)."""
    d = recipe.data
    return load_source(d.source, split=split or d.split, seed=d.seed, limit=limit or d.limit,
                       validation=d.validation if validation is None else validation, **data_dirs(recipe))


def check_trainable(recipe: Recipe, info: Any) -> None:
    """Refuse data a classifier cannot be trained on: one class, or no full training batch (the
    training pipeline drops the last partial batch, so nothing would be trained)."""
    d = recipe.data
    if info.num_classes < 2:
        raise DataError(f"data.source={d.source!r}: {info.num_classes} class found; a classifier needs at "
                        "least two (one sub-folder, or one label value, per class).")
    if info.num_train < d.batch_size:
        raise DataError(f"data.source={d.source!r}: {info.num_train} training images make no full batch of "
                        f"data.batch_size={d.batch_size}; lower data.batch_size (or data.validation).")


def load_data(recipe: Recipe, first_epoch: int = 0) -> Data:
    """The recipe's train and validation pipelines (float32 0..255 images, batched). Training is
    the stream of the epochs from ``first_epoch`` (0-based) to the run's end, each keyed by
    ``(train.seed, epoch)``: a run resumed after epoch ``k`` sees exactly the batches of the
    uninterrupted run (with ``train.steps_per_epoch`` an epoch is that many batches of the stream)."""
    d = recipe.data
    splits = load_splits(recipe)
    info = splits.info
    check_trainable(recipe, info)
    full = info.num_train // d.batch_size  # batches of one pass: the last partial batch is dropped
    steps = recipe.train.steps_per_epoch or full
    stop = first_epoch + math.ceil((recipe.train.epochs - first_epoch) * steps / full) + 1  # passes the run needs
    train_ds = pipeline(recipe, splits.train, info.num_classes, True, first_epoch=first_epoch, stop_epoch=stop)
    val_ds = pipeline(recipe, splits.validation, info.num_classes, False) if splits.validation is not None else None
    return Data(train_ds, val_ds, info, splits.train, min(steps * d.batch_size, info.num_train), steps)


def eval_dataset(recipe: Recipe, source: str, split: str | None, limit: int | None = None,
                 batch_size: int | None = None) -> tuple[tf.data.Dataset, Any, int]:
    """``(batched dataset, info, number of images)`` of ``split`` of ``source``; ``None`` is the
    recipe's held-out validation images (``data.validation`` of ``data.split``, same seed)."""
    d = recipe.data
    common = {"seed": d.seed, "limit": limit or d.limit, **data_dirs(recipe)}
    if split is None:
        splits = load_source(source, split=d.split, validation=d.validation, **common)
        ds, count = splits.validation, splits.info.num_validation
        if ds is None:
            raise DataError(f"recipe {recipe.name!r} holds out no validation images (data.validation=0): "
                           "name a split to evaluate on (--split test).")
    else:
        splits = load_source(source, split=split, validation=0, **common)
        ds, count = splits.train, splits.info.num_train
    out = zdata.make_pipeline(ds, batch_size=batch_size or d.batch_size, training=False,
                              augment=tuple(d.eval_augment), image_size=d.image_size, seed=0, cache=False)
    return out, splits.info, count
