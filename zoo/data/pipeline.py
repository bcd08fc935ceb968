"""``make_pipeline``: turn an unbatched ``(image, label)`` dataset into training/eval batches."""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from zoo.data.augment import alternating_flip, image_transform
from zoo.data.imageops import ImageSize, as_size


def make_pipeline(
    ds: tf.data.Dataset, *, batch_size: int, training: bool, augment: Sequence[str] = (),
    image_size: ImageSize = None, seed: int = 0, cache: bool = True, shuffle_buffer: int = 10000,
    drop_remainder: bool | None = None, first_epoch: int | None = None, stop_epoch: int | None = None,
) -> tf.data.Dataset:
    """Batches of ``(float32 images in 0..255, int32 labels)``.

    Order: cache -> shuffle (training only; seeded, reshuffled every epoch)
    -> augment (parallel, deterministic) -> batch -> prefetch.
    Normalisation is not done here; it is a layer of the model (see
    :func:`zoo.data.normalization_layer`).

    Args:
        ds: unbatched dataset of ``(uint8 image, int label)``.
        batch_size: examples per batch.
        training: shuffle and apply the random augmentations.
        augment: names from :data:`zoo.data.AUGMENTATIONS`.
        image_size: resize (or crop, for ``imagenet_crop``/``center_crop``)
            to this ``int`` or ``(height, width)``.
        seed: seeds the shuffle and every random augmentation; two pipelines
            with the same seed yield identical batches, epoch after epoch.
        cache: cache the decoded images in memory (turn off for datasets
            larger than memory, e.g. ImageNet).
        shuffle_buffer: size of the shuffle buffer.
        drop_remainder: drop the last partial batch; defaults to ``training``.
        first_epoch, stop_epoch: for training, epochs ``first_epoch .. stop_epoch - 1``
            (default: one) keyed by ``(seed, epoch)``; a stream from epoch ``k`` is the tail
            of the one from 0, so a resumed run sees the uninterrupted run's batches.
    """
    size = as_size(image_size)
    keyed = training and first_epoch is not None
    transform = image_transform(augment, training=training, size=size, epoch_keyed=keyed)
    _check_batchable(ds, transform_sets_size=size is not None)
    if cache:
        ds = ds.cache()
    drop = training if drop_remainder is None else drop_remainder
    if training and first_epoch is not None:
        stop = first_epoch + 1 if stop_epoch is None else stop_epoch
        flip_seed = seed if "alternating_flip" in augment else None
        ds = _epoch_stream(ds, range(first_epoch, stop), seed, shuffle_buffer, transform, batch_size, drop, flip_seed)
    else:
        if training:
            ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        if transform is not None:
            # One stateless seed pair per element, different every epoch.
            seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
            ds = tf.data.Dataset.zip(ds, seeds).map(
                lambda example, s: (transform(example[0], s), example[1]),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True,
            )
        ds = _batched(ds, batch_size, drop)
    return ds.prefetch(tf.data.AUTOTUNE)


def _batched(ds: tf.data.Dataset, batch_size: int, drop_remainder: bool) -> tf.data.Dataset:
    ds = ds.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.map(_to_float, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _epoch_stream(ds, epochs: range, seed: int, shuffle_buffer: int, transform, batch_size: int,
                  drop_remainder: bool, flip_seed: int | None = None) -> tf.data.Dataset:
    """Batched ``epochs`` of ``ds`` one after the other, each shuffled with a seed made of
    ``(seed, epoch)``, each element augmented with the stateless seed ``(that seed, index)``, each
    epoch batched on its own (no batch straddles two epochs). The seeds are Python integers
    (tf.data's shuffle refuses a tensor seed once the global seed is 0), so the epochs are built
    here and concatenated as a balanced tree (depth log2 of their number). With ``flip_seed``,
    each image is then mirrored by :func:`~zoo.data.augment.alternating_flip`, keyed by its index
    before the shuffle and the epoch (a shuffle's order does not depend on what it shuffles, so
    the batches are otherwise those without it)."""
    def one_epoch(epoch: int) -> tf.data.Dataset:
        order_seed = (seed * 1_000_003) ^ epoch
        source = ds if flip_seed is None else ds.enumerate()
        epoch_ds = source.shuffle(shuffle_buffer, seed=order_seed, reshuffle_each_iteration=False)
        if flip_seed is not None:
            epoch_ds = epoch_ds.map(
                lambda identity, example: (alternating_flip(example[0], identity, epoch, flip_seed), example[1]),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if transform is not None:
            epoch_ds = epoch_ds.enumerate().map(
                lambda i, example: (transform(example[0], tf.stack([tf.constant(order_seed, tf.int64), i])),
                                    example[1]),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True,
            )
        return _batched(epoch_ds, batch_size, drop_remainder)

    parts = [one_epoch(e) for e in epochs]
    while len(parts) > 1:
        parts = [a.concatenate(b) for a, b in zip(parts[::2], parts[1::2])] + parts[len(parts) // 2 * 2:]
    return parts[0]


def _to_float(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    return tf.cast(images, tf.float32), tf.cast(labels, tf.int32)


def _check_batchable(ds: tf.data.Dataset, *, transform_sets_size: bool) -> None:
    image_spec = ds.element_spec[0]
    if not transform_sets_size and not image_spec.shape.is_fully_defined():
        raise ValueError(
            f"images have no fixed size ({image_spec.shape}); pass image_size "
            f"(with 'imagenet_crop'/'center_crop' for ImageNet-style data)"
        )
