"""ResNet-20 (CIFAR, option A) and ResNet-50 (torchvision layout) in PyTorch, for peer benchmarks.

The networks are built to match :func:`zoo.build` parameter for parameter:

- ``resnet20``: He et al. 2016 §4.2 — 3×3·16 stem, three stages of three basic blocks (16, 32, 64
  filters), option-A shortcuts (subsample by 2, zero-pad the new channels half before and half
  after), global average pool, 10-way linear: 269,722 trainable parameters. The shortcut is the
  one of the widely used reference implementation (``x[:, :, ::2, ::2]`` then ``F.pad`` on the
  channels).
- ``resnet50``: torchvision's ResNet-50 v1.5 (stride on the bottleneck's 3×3): 25,557,032.

:class:`TorchRunner` times an eager training (or inference) step, in channels-last memory format
by default (the faster PyTorch CPU layout on this stack; ``channels_last=False`` measures NCHW).
What it measured is in ``results/benchmarks/peers.csv`` (how: ``results/benchmarks/RUN.md``).
PyTorch is an optional dependency (the ``bench`` extra: ``pip install torch==2.13.0``, a CPU
build); this module imports no TensorFlow, so a peer's process holds PyTorch alone.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.bench.checks import BenchError, default_batch
from zoo.bench.torch_allconv import all_cnn_c
from zoo.bench.timing import time_steps

__all__ = ["BUILDERS", "TorchRunner", "make_torch_runner", "resnet20", "resnet50", "torch_precision"]


# ------------------------------------------------------------------------------ ResNet-20 (A)
class _OptionA(nn.Module):
    """Option-A shortcut: subsample by 2, zero-pad ``extra`` channels half before, half after."""

    def __init__(self, extra: int):
        super().__init__()
        self.before, self.after = extra // 2, extra - extra // 2

    def forward(self, x):
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.before, self.after))


class _Basic(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = _OptionA(cout - cin) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """He et al. 2016 §4.2 CIFAR ResNet with option-A shortcuts (depth 6n+2)."""

    def __init__(self, n: int = 3, num_classes: int = 10):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        blocks, cin = [], 16
        for stage, width in enumerate((16, 32, 64)):
            for b in range(n):
                blocks.append(_Basic(cin, width, 2 if stage > 0 and b == 0 else 1))
                cin = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.blocks(F.relu(self.bn(self.conv(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def resnet20(num_classes: int = 10) -> nn.Module:
    return CifarResNet(3, num_classes)


# ------------------------------------------------------------------------------ ResNet-50
class _Bottleneck(nn.Module):
    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = 4 * width
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.down is None else self.down(x)))


class ImageNetResNet(nn.Module):
    """torchvision's ResNet with bottlenecks (v1.5: stride on the 3×3)."""

    def __init__(self, layers=(3, 4, 6, 3), num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.pool = nn.MaxPool2d(3, 2, 1)
        blocks, cin = [], 64
        for stage, (n, width) in enumerate(zip(layers, (64, 128, 256, 512))):
            for b in range(n):
                blocks.append(_Bottleneck(cin, width, 2 if stage > 0 and b == 0 else 1))
                cin = 4 * width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.pool(F.relu(self.bn1(self.conv1(x))))
        x = self.blocks(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def resnet50(num_classes: int = 1000) -> nn.Module:
    return ImageNetResNet((3, 4, 6, 3), num_classes)


BUILDERS = {"resnet20": (resnet20, (3, 32, 32), 10), "resnet50": (resnet50, (3, 224, 224), 1000),
            "all_cnn_c": (all_cnn_c, (3, 32, 32), 10)}


# ------------------------------------------------------------------------------------ runner
class TorchRunner:
    """One eager PyTorch step of ``name`` (train: forward, cross-entropy, backward, SGD with
    momentum 0.9; infer: forward under ``torch.inference_mode``) on a fixed synthetic batch.

    ``channels_last`` puts the model and the batch in NHWC memory format. ``precision`` is
    ``"float32"`` or a mixed policy (bfloat16 autocast on CPU, float16 on CUDA).
    """

    impl = "torch"

    def __init__(self, name: str, mode: str = "train", batch_size: int = 128, precision: str = "float32",
                 channels_last: bool = True, seed: int = 0, num_classes: int | None = None):
        if name not in BUILDERS:
            raise BenchError(f"no PyTorch peer for {name!r}; peers: {', '.join(BUILDERS)}.")
        builder, shape, classes = BUILDERS[name]
        torch.manual_seed(seed)
        self.name, self.mode, self.batch_size, self.precision = name, mode, batch_size, precision
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.model = builder(num_classes or classes).to(self.device, memory_format=fmt)
        self.x = torch.randn(batch_size, *shape, device=self.device).contiguous(memory_format=fmt)
        self.y = torch.randint(0, num_classes or classes, (batch_size,), device=self.device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
        self.loss = nn.CrossEntropyLoss()
        self.params = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        self.label = f"PyTorch {torch.__version__} eager, {'channels-last' if channels_last else 'NCHW'}"
        self.autocast = None
        if precision.startswith("mixed"):
            dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
            self.autocast = (self.device.type, dtype)
        self.model.train(mode == "train")
        self.versions = {"torch": torch.__version__, "torch_threads": torch.get_num_threads()}

    def _context(self):
        if self.autocast is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.autocast[0], dtype=self.autocast[1])

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def step(self) -> None:
        if self.mode == "train":
            self.optimizer.zero_grad(set_to_none=True)
            with self._context():
                loss = self.loss(self.model(self.x), self.y)
            loss.backward()
            self.optimizer.step()
        else:
            with torch.inference_mode(), self._context():
                self.model(self.x)
        self._sync()

    def measure(self, steps: int) -> list[float]:
        return time_steps(self.step, steps)


def torch_precision(precision: str) -> str:
    """The zoo's precision name (``fp32``, ``mixed``, ``mixed_bfloat16``, ``mixed_float16``) as
    :class:`TorchRunner` takes it: ``float32`` or a mixed name (autocast)."""
    if precision == "fp32":
        return "float32"
    if not (isinstance(precision, str) and precision in ("mixed", "mixed_bfloat16", "mixed_float16")):
        raise BenchError(f"precision must be fp32 or mixed for a PyTorch peer, got {precision!r}.")
    return precision


def make_torch_runner(spec: Mapping[str, Any]) -> TorchRunner:
    """A :class:`TorchRunner` from a worker spec (``name``, ``options``, ``mode``, ``batch_size``,
    ``precision``, ``seed``), with the attributes the worker protocol reports beside zoo's runners."""
    name, batch = spec["name"], spec.get("batch_size")
    if batch is None:
        batch = default_batch(BUILDERS[name][1][1:]) if name in BUILDERS else 128
    runner = TorchRunner(name, spec.get("mode", "train"), batch, torch_precision(spec.get("precision", "fp32")),
                         seed=int(spec.get("seed", 0)), **dict(spec.get("options") or {}))
    runner.flops = None  # the parent takes the zoo model's count: the same network
    runner.jit_compile = False
    runner.policy = runner.precision
    return runner
