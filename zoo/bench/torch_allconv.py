"""All-CNN-C (Springenberg et al. 2015, Table 1 and §3.2) in PyTorch, for peer benchmarks.

The network matches ``zoo.build("all_cnn_c")`` parameter for parameter (1,369,738): dropout 0.2 on
the input, 3×3·96 ×2, a 3×3·96 convolution of stride 2 (padding 1, as the authors' Caffe models),
dropout 0.5, 3×3·192 ×2, 3×3·192 of stride 2, dropout 0.5, 3×3·192 (valid), 1×1·192, 1×1·10, ReLU
after every convolution (the class layer's too, as the paper's Table 1 lists it), global average
pooling. Like :mod:`zoo.bench.torch_resnet` it imports no TensorFlow.
"""
from __future__ import annotations

from torch import nn

__all__ = ["all_cnn_c"]


def _conv(cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride, padding), nn.ReLU(inplace=True)]


def all_cnn_c(num_classes: int = 10) -> nn.Module:
    """All-CNN-C as the zoo builds it (see the module docstring)."""
    layers: list[nn.Module] = [nn.Dropout(0.2)]
    layers += _conv(3, 96, 3) + _conv(96, 96, 3) + _conv(96, 96, 3, 2) + [nn.Dropout(0.5)]
    layers += _conv(96, 192, 3) + _conv(192, 192, 3) + _conv(192, 192, 3, 2) + [nn.Dropout(0.5)]
    layers += _conv(192, 192, 3, padding=0) + _conv(192, 192, 1, padding=0) + _conv(192, num_classes, 1, padding=0)
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)
