"""Per-image augmentations, driven by explicit stateless seeds.

Every random op takes a ``seed`` tensor of shape ``[2]`` (see
:func:`zoo.data.pipeline.make_pipeline`, which draws one per element and
epoch from ``tf.data.Dataset.random``), so results are reproducible.
Images stay ``uint8`` throughout.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import tensorflow as tf

from zoo.data.imageops import resize_if_needed, resize_uint8

AUGMENTATIONS = ("crop_pad4", "flip", "cutout", "imagenet_crop", "center_crop", "translate2", "alternating_flip")
TRANSLATE_PIXELS = 2  # airbench94's hyp['aug']['translate']
CENTER_CROP_FRACTION = 0.875  # 224 / 256
RESIZED_CROP_AREA = (0.08, 1.0)
RESIZED_CROP_ASPECT = (3 / 4, 4 / 3)
CUTOUT_SIZE = 16  # DeVries & Taylor 2017 §5.1: 16x16 for CIFAR-10, 8x8 for CIFAR-100
CUTOUT_FILL = 128  # mid-grey: about what a per-channel normalisation maps to 0, as in the paper

Transform = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


def check_augmentations(names: Sequence[str]) -> tuple[str, ...]:
    """Validate augmentation names; raises ``ValueError`` listing the valid ones."""
    if isinstance(names, str):
        names = (names,)
    unknown = [name for name in names if name not in AUGMENTATIONS]
    if unknown:
        raise ValueError(f"unknown augmentation(s) {unknown}; valid names: {', '.join(AUGMENTATIONS)}")
    return tuple(names)


def pad_and_random_crop(image: tf.Tensor, seed: tf.Tensor, padding: int = 4) -> tf.Tensor:
    """Zero-pad ``padding`` pixels per side, then crop back to the original size at random.

    The CIFAR augmentation of He et al. 2016 (Deep Residual Learning), §4.2:
    "4 pixels are padded on each side, and a 32×32 crop is randomly sampled
    from the padded image or its horizontal flip".
    """
    padded = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]])
    return tf.image.stateless_random_crop(padded, tf.shape(image), seed=seed)


def random_translate(image: tf.Tensor, seed: tf.Tensor, pixels: int = TRANSLATE_PIXELS) -> tf.Tensor:
    """Shift by up to ``pixels`` each way (each of the ``(2 pixels + 1)**2`` shifts equally likely),
    the edge reflected into the gap: airbench's translation (Jordan 2024; the authors' ``batch_crop``
    of a reflection-padded image), where ``crop_pad4`` pads 4 zero pixels."""
    padded = tf.pad(image, [[pixels, pixels], [pixels, pixels], [0, 0]], mode="REFLECT")
    return tf.image.stateless_random_crop(padded, tf.shape(image), seed=seed)


def flip_bit(identity: tf.Tensor, seed: int) -> tf.Tensor:
    """The fixed random bit ``b_i`` of image ``identity`` (its index before any shuffle) under ``seed``."""
    key = tf.stack([tf.constant(seed, tf.int64) ^ 0x5F1F, tf.cast(identity, tf.int64)])
    return tf.random.stateless_uniform([], key) < 0.5


def alternating_flip(image: tf.Tensor, identity: tf.Tensor, epoch: int, seed: int) -> tf.Tensor:
    """Airbench's alternating flip (Jordan 2024 §3.5): mirror image ``identity`` in ``epoch``
    (0-based) iff ``b_i XOR (epoch odd)``: epoch 0 flips a random half, every odd epoch exactly the
    other images, so each image is seen both ways in every two epochs."""
    flip = tf.math.logical_xor(flip_bit(identity, seed), tf.constant(epoch % 2 == 1))
    return tf.cond(flip, lambda: tf.reverse(image, axis=[1]), lambda: image)


def random_flip(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Mirror left-right with probability 1/2 (He et al. 2016 §4.2; Krizhevsky et al. 2012)."""
    return tf.image.stateless_random_flip_left_right(image, seed=seed)


def random_cutout(image: tf.Tensor, seed: tf.Tensor, size: int = CUTOUT_SIZE,
                  fill: int = CUTOUT_FILL) -> tf.Tensor:
    """Cutout (DeVries & Taylor 2017, "Improved Regularization of Convolutional Neural Networks
    with Cutout", §3): grey out a ``size`` x ``size`` square whose centre is uniform over the
    image, so it may lie partly outside (§3.2: that mattered more than the shape)."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    seed_y, seed_x = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
    cy = tf.random.stateless_uniform([], seed_y, 0, height, dtype=tf.int32)
    cx = tf.random.stateless_uniform([], seed_x, 0, width, dtype=tf.int32)
    rows, cols = tf.range(height)[:, None], tf.range(width)[None, :]
    inside = ((rows >= cy - size // 2) & (rows < cy + size - size // 2)
              & (cols >= cx - size // 2) & (cols < cx + size - size // 2))
    return tf.where(inside[..., None], tf.constant(fill, image.dtype), image)


def random_resized_crop(image: tf.Tensor, seed: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    """Crop 8–100% of the area with aspect ratio 3/4–4/3, resized to ``size``.

    The "Inception" crop of Szegedy et al. 2015 (Going Deeper with
    Convolutions, §6), as in torchvision's ``RandomResizedCrop``; falls back
    to the whole image when no valid box is found in 10 attempts.
    """
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=seed,
        min_object_covered=0.0,
        aspect_ratio_range=RESIZED_CROP_ASPECT,
        area_range=RESIZED_CROP_AREA,
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    return resize_uint8(tf.slice(image, begin, crop_size), size)


def center_crop(image: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    """Resize the shorter side to ``size / 0.875`` then take the central ``size`` crop.

    The common single-crop ImageNet evaluation (shorter side 256, central
    224×224 crop), as in the torchvision reference scripts.
    """
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    short_target = tf.cast(max(size), tf.float32) / CENTER_CROP_FRACTION
    scale = short_target / tf.reduce_min(shape)
    scaled = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), size)
    resized = resize_uint8(image, scaled)
    top = (scaled[0] - size[0]) // 2
    left = (scaled[1] - size[1]) // 2
    cropped = tf.image.crop_to_bounding_box(resized, top, left, size[0], size[1])
    return tf.ensure_shape(cropped, (*size, image.shape[-1]))


def image_transform(
    names: Sequence[str], *, training: bool, size: tuple[int, int] | None, epoch_keyed: bool = False
) -> Transform | None:
    """Compose the augmentations into one ``(image, seed) -> image`` function.

    Geometry first (``imagenet_crop``/``center_crop`` or a plain resize to
    ``size``), then ``crop_pad4``, then ``translate2``, then ``flip``, then ``cutout``. Random
    augmentations only apply when ``training``; at evaluation ``imagenet_crop`` becomes its
    standard counterpart ``center_crop``. ``alternating_flip`` needs each image's identity and
    epoch: with ``epoch_keyed`` the caller applies it (:func:`alternating_flip`, the epoch-keyed
    training stream of :func:`zoo.data.make_pipeline`); without, it is a random ``flip``.
    Returns ``None`` when nothing needs to be done.
    """
    names = set(check_augmentations(names))
    if "alternating_flip" in names:
        names.discard("alternating_flip")
        if not epoch_keyed:
            names.add("flip")
    if names & {"imagenet_crop", "center_crop"} and size is None:
        raise ValueError("imagenet_crop and center_crop need image_size")
    random_crop = training and "imagenet_crop" in names
    central = not random_crop and bool(names & {"imagenet_crop", "center_crop"})
    pad_crop = training and "crop_pad4" in names
    flip = training and "flip" in names
    cutout = training and "cutout" in names
    translate = training and "translate2" in names
    if not (random_crop or central or pad_crop or flip or cutout or translate or size):
        return None

    def transform(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        seeds = tf.random.experimental.stateless_split(seed, num=3)
        if random_crop:
            image = random_resized_crop(image, seeds[0], size)
        elif central:
            image = center_crop(image, size)
        elif size:
            image = resize_if_needed(image, size)
        if pad_crop:
            image = pad_and_random_crop(image, seeds[1])
        if translate:  # its own seed, like cutout's
            image = random_translate(image, tf.random.experimental.stateless_fold_in(seed, 4))
        if flip:
            image = random_flip(image, seeds[2])
        if cutout:  # its own seed, so adding it leaves the other augmentations' draws as they were
            image = random_cutout(image, tf.random.experimental.stateless_fold_in(seed, 3))
        return image

    return transform
