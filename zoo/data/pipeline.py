"""``make_pipeline``: turn an unbatched ``(image, label)`` dataset into training/eval batches."""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from zoo.data.augment import image_transform
from zoo.data.imageops import ImageSize, as_size


def make_pipeline(
    ds: tf.data.Dataset,
    *,
    batch_size: int,
    training: bool,
    augment: Sequence[str] = (),
    image_size: ImageSize = None,
    seed: int = 0,
    cache: bool = True,
    shuffle_buffer: int = 10000,
    drop_remainder: bool | None = None,
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
    """
    size = as_size(image_size)
    transform = image_transform(augment, training=training, size=size)
    _check_batchable(ds, transform_sets_size=size is not None)
    if cache:
        ds = ds.cache()
    if training:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if transform is not None:

        def augment_example(example, element_seed):
            image, label = example
            return transform(image, element_seed), label

        # One stateless seed pair per element, different every epoch.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip(ds, seeds).map(
            augment_example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )
    ds = ds.batch(
        batch_size,
        drop_remainder=training if drop_remainder is None else drop_remainder,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    ds = ds.map(_to_float, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def _to_float(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    return tf.cast(images, tf.float32), tf.cast(labels, tf.int32)


def _check_batchable(ds: tf.data.Dataset, *, transform_sets_size: bool) -> None:
    image_spec = ds.element_spec[0]
    if not transform_sets_size and not image_spec.shape.is_fully_defined():
        raise ValueError(
            f"images have no fixed size ({image_spec.shape}); pass image_size "
            f"(with 'imagenet_crop'/'center_crop' for ImageNet-style data)"
        )
