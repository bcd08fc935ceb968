"""VGG: Simonyan & Zisserman 2015, "Very Deep Convolutional Networks for Large-Scale Image
Recognition" (arXiv 1409.1556).

Configurations A, B, D and E of Table 1 (``vgg11``, ``vgg13``, ``vgg16``, ``vgg19``): 3×3
convolutions (stride 1, padding 1, bias, ReLU; §2.1) in five blocks of 64, 128, 256, 512 and 512
filters, each block ended by a 2×2 stride-2 max-pool; then FC-4096, FC-4096 (ReLU, dropout 50%,
§3.1) and FC-classes. No local response normalisation (configuration A-LRN is not built).

Layer names are keras.applications' (``block{b}_conv{i}``, ``flatten``, ``fc1``, ``fc2``,
``predictions``), whose VGG16 / VGG19 have the same weights layout (they leave the weightless dropout
out), so their weights load by name; torchvision's ``features.{j}`` / ``classifier.{0,3,6}`` map onto
the same layers in order (its flatten is channels-first: permute ``fc1``'s rows when converting).

Sites: ``pool1`` … ``pool5``, the blocks' max-pools (at a pool site ``conv`` is the shared factory's
learned 3×3 stride-2 convolution, ``s2d`` a space-to-depth + 1×1). ``output_stride`` 16 or 8 drops the
last pools and dilates the convolutions after them (DeepLab's atrous VGG-16, Chen et al.). The head
flattens, so the number of ``fc1`` weights follows the input size (224×224 → 7×7×512).
Features: each block's output before its pool (reduction 1, 2, 4, 8, 16) and the output of pool5
(32): ``build("vgg16", features_only=True, out_indices=(0,))`` keeps the network up to its first
downsampling, for per-pixel features.
"""
from __future__ import annotations

from dataclasses import dataclass

from keras import layers

from zoo.layers.downsample import Site, SitePlan, pool_site
from zoo.models.registry import Family, Feature, Trunk, register_model

PAPER = "Simonyan & Zisserman 2015, Very Deep Convolutional Networks (arXiv 1409.1556)"
WIDTHS = (64, 128, 256, 512, 512)


@dataclass(frozen=True)
class VGGConfig:
    """Convolutions per block (Table 1); the widths are :data:`WIDTHS`."""

    convs: tuple[int, int, int, int, int]


def vgg_sites(cfg: VGGConfig, **_) -> list[Site]:
    return [Site(f"pool{b}", "pool", "max", f"2x2/2 max-pool after block {b}") for b in range(1, len(cfg.convs) + 1)]


def _conv(x, *, filters: int, kernel_size: int = 3, strides: int = 1, padding: str = "same", dilation_rate: int = 1,
          name: str):
    """3×3 convolution with bias and ReLU (one layer, as keras.applications)."""
    return layers.Conv2D(filters, kernel_size, strides=strides, padding=padding, dilation_rate=dilation_rate,
                         activation="relu", kernel_initializer="he_normal", name=name)(x)


def vgg_trunk(inputs, cfg: VGGConfig, plan: SitePlan) -> Trunk:
    """Five blocks of 3×3 convolutions and pools → (head: flatten, FC-4096 ×2 with dropout, FC-classes)."""
    x, features = inputs, []
    for b, (n, width) in enumerate(zip(cfg.convs, WIDTHS), 1):
        for i in range(1, n + 1):
            x = _conv(x, filters=width, dilation_rate=plan.dilation, name=f"block{b}_conv{i}")
        features.append(Feature(f"block{b}", x, plan.reduction))
        choice, _ = plan.take(f"pool{b}")
        x = pool_site(x, choice, conv_fn=_conv, kernel=2, stride=2, pad=0, name=f"block{b}_pool")
    features.append(Feature("pool5", x, plan.reduction))

    def head(x, num_classes: int, dropout: float):
        x = layers.Flatten(name="flatten")(x)
        for i in (1, 2):
            x = layers.Dense(4096, activation="relu", name=f"fc{i}")(x)
            x = layers.Dropout(dropout, name=f"fc{i}_dropout")(x) if dropout else x
        return layers.Dense(num_classes, name="predictions")(x)

    return Trunk(features, head, default_dropout=0.5)


FAMILY = Family("vgg", lambda cfg, **_: vgg_sites(cfg), vgg_trunk, PAPER)

VARIANTS = {  # name: (Table 1 configuration, convolutions per block, trainable params at 224 × 224)
    "vgg11": ("A", (1, 1, 2, 2, 2), 132_863_336),
    "vgg13": ("B", (2, 2, 2, 2, 2), 133_047_848),
    "vgg16": ("D", (2, 2, 3, 3, 3), 138_357_544),
    "vgg19": ("E", (2, 2, 4, 4, 4), 143_667_240),
}

for _name, (_letter, _convs, _params) in VARIANTS.items():
    register_model(_name, FAMILY, VGGConfig(_convs), input_shape=(224, 224, 3), num_classes=1000,
                   published={"params": _params},
                   description=f"VGG-{_name[3:]}, configuration {_letter} (Simonyan 2015, Table 1)")
