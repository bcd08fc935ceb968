"""Per-pixel features from a pretrained network: the image beside a 3-component PCA of each stage's
features as RGB — the practitioner's recipe behind Deep Dream and neural style transfer (a
pretrained VGG kept up to its first downsampling gives a feature vector per pixel).

    python examples/pixel_features.py                       # -> results/features/pixel-features.png
    python examples/pixel_features.py --download            # fetch keras.applications' headless VGG-16 first
    python examples/pixel_features.py --image photo.jpg --out my.png

With VGG-16's ImageNet weights (``zoo.build("vgg16", weights="imagenet", features_only=True,
out_indices=(0,))`` is the network up to its first downsampling): ``block1`` at full resolution,
``block2`` and ``block3`` (1/2, 1/4) upsampled bilinearly, and ``block5`` computed at 1/8 with
``output_stride=8`` (its pools dropped, its convolutions dilated) instead of 1/16, upsampled.

Until upstream VGG-16 weights are cached (``zoo weights vgg16`` says ``converted`` or
``downloaded``), it runs with the zoo's own CIFAR-10 weights, ``resnet20:cifar10`` (trained on
32×32 images, applied fully convolutionally at full size: ``stem`` at 1/1, ``stage2``/``stage3`` at
1/2 and 1/4 upsampled, and ``stage3`` at full resolution with ``output_stride=1``), and says so in
the picture's title and on stdout. The image is ``grace_hopper.jpg``, the photograph matplotlib
ships in its sample data (a dependency of the zoo).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

OUT = Path("results/features/pixel-features.png")
# model: the stages to show, each (feature name, extra build options)
PLANS = {
    "vgg16": (("block1", {}), ("block2", {}), ("block3", {}), ("block5", {"output_stride": 8})),
    "resnet20": (("stem", {}), ("stage2", {}), ("stage3", {}), ("stage3", {"output_stride": 1})),
}
VGG_TAGS = ("imagenet", "imagenet-keras")  # torchvision's, then keras.applications'


def sample_image() -> np.ndarray:
    """matplotlib's sample photograph (RGB uint8)."""
    from matplotlib import cbook
    from PIL import Image

    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as im:
        return np.asarray(im.convert("RGB"))


def load_image(path: str | None, size: int | None) -> np.ndarray:
    """The image at ``path`` (or the sample), its short side resized to ``size`` when given."""
    from PIL import Image

    image = sample_image() if path is None else np.asarray(Image.open(path).convert("RGB"))
    if size:
        h, w = image.shape[:2]
        scale = size / min(h, w)
        image = np.asarray(Image.fromarray(image).resize((round(w * scale), round(h * scale)), Image.BILINEAR))
    return image


def pick_weights(download: bool) -> tuple[str, str, str]:
    """(model, tag, what to say): VGG-16's upstream ImageNet weights where cached, else with ``download``
    keras.applications' (its headless file is the smaller download), else the zoo's CIFAR-10 ResNet-20."""
    from zoo.weights import upstream
    from zoo.weights.imagenet import get_upstream

    cached = [t for t in VGG_TAGS if upstream.state(get_upstream("vgg16", t)) in ("converted", "downloaded")]
    for tag in cached or (["imagenet-keras"] if download else []):
        return "vgg16", tag, f"vgg16:{tag} ({get_upstream('vgg16', tag).publisher}'s ImageNet weights)"
    return ("resnet20", "cifar10", "resnet20:cifar10, the zoo's CIFAR-10 weights (no upstream VGG-16 weights "
                                   "cached: `zoo weights fetch vgg16 imagenet-keras --no-top`, or --download)")


def stage_features(model: str, tag: str, image: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(title, H×W×C features upsampled to the image) for each stage of :data:`PLANS`."""
    import keras

    import zoo
    from zoo.models.registry import feature_info

    out = []
    for options in _option_sets(model):
        names = [n for n, o in PLANS[model] if o == options]
        info = feature_info(model, input_shape=image.shape, **options)
        index = [next(i for i, f in enumerate(info) if f["name"] == n) for n in names]
        net = zoo.build(model, weights=tag, features_only=True, out_indices=tuple(index), include_preprocessing=True,
                        input_shape=image.shape, **options)
        maps = net(image[None].astype("float32"))
        for i, fmap in zip(index, maps if isinstance(maps, (list, tuple)) else [maps]):
            up = keras.ops.image.resize(fmap, image.shape[:2], interpolation="bilinear")
            extra = ", ".join(f"{k}={v}" for k, v in options.items())
            title = f"{info[i]['name']} (1/{info[i]['reduction']}, {info[i]['channels']} ch{', ' + extra if extra else ''})"
            out.append((title, np.asarray(up)[0]))
    return out


def _option_sets(model: str) -> list[dict]:
    sets = []
    for _, options in PLANS[model]:
        if options not in sets:
            sets.append(options)
    return sets


def pca_rgb(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """The first 3 principal components of per-pixel features as RGB in [0, 1] (1st-99th percentile)."""
    h, w, c = features.shape
    flat = features.reshape(-1, c).astype(np.float64)
    rng = np.random.default_rng(seed)
    rows = flat[rng.choice(len(flat), min(len(flat), 20000), replace=False)]
    mean = rows.mean(0)
    _, _, vt = np.linalg.svd(rows - mean, full_matrices=False)
    proj = (flat - mean) @ vt[:3].T
    lo, hi = np.percentile(proj, 1, axis=0), np.percentile(proj, 99, axis=0)
    return np.clip((proj - lo) / np.maximum(hi - lo, 1e-12), 0, 1).reshape(h, w, 3)


def draw(image: np.ndarray, panels: list[tuple[str, np.ndarray]], what: str, out: Path) -> Path:
    """The image beside each stage's PCA picture, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from zoo.report import atomic_path

    fig, axes = plt.subplots(1, 1 + len(panels), figsize=(3.2 * (1 + len(panels)), 3.9))
    for ax, (title, picture) in zip(axes, [("image", image), *[(t, pca_rgb(f)) for t, f in panels]]):
        ax.imshow(picture)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.suptitle(f"per-pixel features, 3-component PCA as RGB: {what}", fontsize=8)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", help="an image file (default: matplotlib's grace_hopper.jpg)")
    parser.add_argument("--size", type=int, help="resize the short side to this many pixels")
    parser.add_argument("--out", default=str(OUT), help=f"the picture (default {OUT})")
    parser.add_argument("--download", action="store_true", help="download VGG-16's ImageNet weights if not cached")
    args = parser.parse_args(argv)
    image = load_image(args.image, args.size)
    model, tag, what = pick_weights(args.download)
    print(f"features of a {image.shape[1]}x{image.shape[0]} image from {what}")
    out = draw(image, stage_features(model, tag, image), what, Path(args.out))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
