"""Converters: keras.applications, torchvision and FishNet-authors weights → zoo models, with parity.

Each source model gets random weights *and* random BatchNorm statistics; the converted zoo model
must give the same logits on the same random input (max abs difference ≤ 1e-4, eval mode). The
PyTorch reference modules below reproduce torchvision's ResNet / SqueezeNet / VGG and the FishNet
authors' model (kevin-ssy/FishNet ``models/fishnet.py`` + ``fish_block.py``) closely enough that
their state-dict keys are the published ones.
"""
from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from zoo.weights.convert import convert
from zoo.weights.convert.common import ConversionError, adaptive_pool_matrix
from zoo.weights.convert.torchvision import fold_fc1

TOL = 1e-4
PARITY: dict[str, float] = {}  # converter -> max abs difference, printed at the end (pytest -s)


def _report(name: str, diff: float, scale: float | None = None) -> None:
    PARITY[name] = diff
    print(f"\nparity {name}: max abs diff {diff:.3g}" + ("" if scale is None else f" (max |output| {scale:.3g})"))


def _randomize_keras_bn(model, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape
            layer.gamma.assign(rng.uniform(0.5, 1.5, n).astype("float32"))
            layer.beta.assign(rng.normal(0.0, 0.1, n).astype("float32"))
            layer.moving_mean.assign(rng.normal(0.0, 0.1, n).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, n).astype("float32"))


def _images(size: int, batch: int = 2, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 1.0, (batch, size, size, 3)).astype("float32")


# ================================================================================ keras.applications
def test_keras_resnet50_parity():
    src = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classifier_activation=None, classes=10)
    _randomize_keras_bn(src)
    conversion = convert("keras", "resnet50", src)
    model = conversion.model
    assert conversion.build["layout"] == "keras"
    assert conversion.assigned == len(model.weights) == len(src.weights)
    x = _images(64)
    diff = float(np.abs(src(x, training=False).numpy() - model(x, training=False).numpy()).max())
    _report("keras ResNet50 -> resnet50(layout=keras)", diff)
    assert diff <= TOL


def test_keras_vgg16_parity_with_top():
    src = keras.applications.VGG16(weights=None, input_shape=(32, 32, 3), classifier_activation=None, classes=10)
    model = convert("keras", "vgg16", src).model
    x = _images(32) * 50
    a, b = src(x, training=False).numpy(), model(x, training=False).numpy()
    diff = float(np.abs(a - b).max())
    _report("keras VGG16 -> vgg16", diff)
    assert diff <= TOL and np.abs(a).max() > 0


@pytest.mark.parametrize("fmt", ["keras3", "legacy"])
def test_keras_vgg19_headless_from_weights_file(tmp_path, fmt):
    """From a file: Keras 3 ``.weights.h5``, or the legacy ``.h5`` keras.applications publishes
    (``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5``), loaded by layer order."""
    src = keras.applications.VGG19(weights=None, include_top=False, input_shape=(32, 32, 3))
    if fmt == "keras3":
        path = tmp_path / "vgg19_notop.weights.h5"
        src.save_weights(path)
    else:
        import h5py

        legacy = pytest.importorskip("keras.src.legacy.saving.legacy_h5_format")
        path = tmp_path / "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
        with h5py.File(path, "w") as f:
            legacy.save_weights_to_hdf5_group(f, src)
    model = convert("keras", "vgg19", path, input_shape=(32, 32, 3)).model
    x = _images(32) * 50
    diff = float(np.abs(src(x).numpy() - model(x).numpy()).max())
    _report(f"keras VGG19 (no top, {fmt} file) -> vgg19", diff)
    assert diff <= TOL


def test_keras_unknown_model_is_refused():
    with pytest.raises(ConversionError, match="keras.applications conversion covers"):
        convert("keras", "resnet18", keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3)))


def test_unknown_source_lists_the_sources():
    with pytest.raises(ValueError, match="torchvision"):
        convert("caffe2", "resnet50", None)


# ============================================================================ adaptive pool / fc1
@pytest.mark.parametrize("size", [1, 2, 3, 7, 9])
def test_fold_fc1_matches_adaptive_pool_then_channels_first_flatten(size):
    rng = np.random.default_rng(size)
    c, out = 4, 5
    weight = rng.normal(size=(out, c * 49)).astype("float64")
    fmap = rng.normal(size=(c, size, size))  # channels first, as torchvision
    ah, aw = adaptive_pool_matrix(size, 7), adaptive_pool_matrix(size, 7)
    pooled = np.einsum("iy,jx,cyx->cij", ah, aw, fmap)
    expected = weight @ pooled.reshape(-1)  # torch.flatten(NCHW)
    kernel = fold_fc1(weight, c, size, size)
    got = fmap.transpose(1, 2, 0).reshape(-1) @ kernel  # keras Flatten(NHWC)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)


def test_adaptive_pool_matrix_bins():
    np.testing.assert_array_equal(adaptive_pool_matrix(7, 7), np.eye(7))
    a = adaptive_pool_matrix(2, 7)  # PyTorch bins [floor(i*2/7), ceil((i+1)*2/7))
    assert a.shape == (7, 2) and np.allclose(a.sum(1), 1.0)
    assert np.allclose(a[3], [0.5, 0.5]) and np.allclose(a[0], [1.0, 0.0]) and np.allclose(a[6], [0.0, 1.0])


# ===================================================================================== PyTorch
try:  # the keras tests above run without torch; the tests below skip without it
    import torch
    from torch import nn
except ImportError:  # pragma: no cover - torch is in the test extra
    torch = nn = None
Module = nn.Module if nn is not None else object

requires_torch = pytest.mark.skipif(torch is None, reason="needs torch: pip install torch==2.13.0")


def _randomize_torch(module: "nn.Module", seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            elif isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    module.eval()


def _torch_logits(module, x_nhwc: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(x_nhwc.transpose(0, 3, 1, 2).copy())).numpy()


def _parity(name: str, torch_model, keras_model, x: np.ndarray) -> float:
    a = _torch_logits(torch_model, x)
    b = keras_model(x, training=False).numpy()
    if a.ndim == 4:  # feature maps: NCHW -> NHWC
        a = a.transpose(0, 2, 3, 1)
    assert a.shape == b.shape, (a.shape, b.shape)
    diff = float(np.abs(a - b).max())
    _report(name, diff, float(np.abs(a).max()))
    assert np.abs(a).max() > 1e-3, "degenerate outputs"
    return diff


# ----------------------------------------------------------------- torchvision ResNet (resnet.py)
class TvBasicBlock(Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class TvBottleneck(Module):
    expansion = 4  # torchvision v1.5: the stride sits on the 3x3

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class TvResNet(Module):
    def __init__(self, block, layers, num_classes=1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], 2)
        self.layer3 = self._make_layer(block, 256, layers[2], 2)
        self.layer4 = self._make_layer(block, 512, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512 * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


@requires_torch
@pytest.mark.parametrize("name,block,layers", [("resnet18", TvBasicBlock, (2, 2, 2, 2)),
                                               ("resnet50", TvBottleneck, (3, 4, 6, 3))])
def test_torchvision_resnet_parity(name, block, layers, tmp_path):
    ref = TvResNet(block, layers, num_classes=10)
    _randomize_torch(ref)
    path = tmp_path / f"{name}.pth"
    torch.save(ref.state_dict(), path)
    conversion = convert("torchvision", name, path, input_shape=(64, 64, 3))
    model = conversion.model
    assert conversion.build["num_classes"] == 10
    assert _parity(f"torchvision {name}", ref, model, _images(64)) <= TOL


@requires_torch
def test_torchvision_resnet_headless_drops_only_fc():
    ref = TvResNet(TvBasicBlock, (2, 2, 2, 2), num_classes=10)
    _randomize_torch(ref, seed=3)
    conversion = convert("torchvision", "resnet18", ref, input_shape=(64, 64, 3), include_top=False)
    model = conversion.model
    assert sorted(conversion.dropped) == ["fc.bias", "fc.weight"]
    trunk = nn.Sequential(*list(ref.children())[:-2])
    assert _parity("torchvision resnet18 (no top)", trunk, model, _images(64)) <= TOL


@requires_torch
def test_missing_and_unused_keys_are_listed():
    state = {k: v.clone() for k, v in TvResNet(TvBasicBlock, (2, 2, 2, 2), num_classes=10).state_dict().items()}
    del state["layer3.0.bn2.running_var"]
    state["layer9.0.conv1.weight"] = torch.zeros(1)
    with pytest.raises(ConversionError) as err:
        convert("torchvision", "resnet18", state, input_shape=(64, 64, 3))
    text = str(err.value)
    assert "stage4_block1_conv2_bn/moving_variance" in text and "not assigned" in text
    assert "layer9.0.conv1.weight" in text


@requires_torch
def test_wrong_depth_is_refused():
    state = TvResNet(TvBasicBlock, (3, 4, 6, 3), num_classes=10).state_dict()  # resnet34
    with pytest.raises(ConversionError, match="not used"):
        convert("torchvision", "resnet18", state, input_shape=(64, 64, 3))


# ------------------------------------------------------- torchvision SqueezeNet (squeezenet.py)
class TvFire(Module):
    def __init__(self, inplanes, squeeze, e1, e3):
        super().__init__()
        self.squeeze = nn.Conv2d(inplanes, squeeze, 1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze, e1, 1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze, e3, 3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat([self.expand1x1_activation(self.expand1x1(x)),
                          self.expand3x3_activation(self.expand3x3(x))], 1)


class TvSqueezeNet(Module):
    def __init__(self, version="1_0", num_classes=1000):
        super().__init__()
        pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)  # noqa: E731
        if version == "1_0":
            self.features = nn.Sequential(
                nn.Conv2d(3, 96, 7, 2), nn.ReLU(inplace=True), pool(),
                TvFire(96, 16, 64, 64), TvFire(128, 16, 64, 64), TvFire(128, 32, 128, 128), pool(),
                TvFire(256, 32, 128, 128), TvFire(256, 48, 192, 192), TvFire(384, 48, 192, 192),
                TvFire(384, 64, 256, 256), pool(), TvFire(512, 64, 256, 256))
        else:
            self.features = nn.Sequential(
                nn.Conv2d(3, 64, 3, 2), nn.ReLU(inplace=True), pool(),
                TvFire(64, 16, 64, 64), TvFire(128, 16, 64, 64), pool(),
                TvFire(128, 32, 128, 128), TvFire(256, 32, 128, 128), pool(),
                TvFire(256, 48, 192, 192), TvFire(384, 48, 192, 192), TvFire(384, 64, 256, 256),
                TvFire(512, 64, 256, 256))
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(512, num_classes, 1), nn.ReLU(inplace=True),
                                        nn.AdaptiveAvgPool2d(1))

    def forward(self, x):
        return torch.flatten(self.classifier(self.features(x)), 1)


@requires_torch
@pytest.mark.parametrize("version", ["1_0", "1_1"])
def test_torchvision_squeezenet_parity(version):
    ref = TvSqueezeNet(version, num_classes=10)
    _randomize_torch(ref)
    with torch.no_grad():  # positive class-conv bias so the final ReLU keeps most logits alive
        ref.classifier[1].bias.add_(1.0)
    # 72x72: every max-pool of both versions sees a size where ceil mode adds a row/column
    model = convert("torchvision", f"squeezenet{version}", ref.state_dict(), input_shape=(72, 72, 3)).model
    assert _parity(f"torchvision squeezenet{version}", ref, model, _images(72)) <= TOL


@requires_torch
def test_squeezenet_bypass_variant_reports_missing_bypass_convs():
    state = TvSqueezeNet("1_1", num_classes=10).state_dict()
    with pytest.raises(ConversionError, match="fire2_bypass"):
        convert("torchvision", "squeezenet1_1_complex_bypass", state, input_shape=(72, 72, 3))


# ---------------------------------------------------------------------- torchvision VGG (vgg.py)
VGG_CFG = {"vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
           "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]}


class TvVGG(Module):
    def __init__(self, cfg, num_classes=1000, batch_norm=False):
        super().__init__()
        layers, c = [], 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers.append(nn.Conv2d(c, v, 3, padding=1))
                layers += [nn.BatchNorm2d(v), nn.ReLU(inplace=True)] if batch_norm else [nn.ReLU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(),
                                        nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(),
                                        nn.Linear(4096, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


@requires_torch
def test_torchvision_vgg_headless_parity():
    ref = TvVGG(VGG_CFG["vgg16"], num_classes=10)
    _randomize_torch(ref)
    model = convert("torchvision", "vgg16", ref.state_dict(), input_shape=(32, 32, 3), include_top=False).model
    assert _parity("torchvision vgg16 (no top, 32x32)", ref.features, model, _images(32) * 20) <= TOL


@requires_torch
def test_torchvision_vgg_classifier_permutation_and_pool_folding():
    """64×64: a 2×2 map that torchvision pools adaptively to 7×7 and flattens channels first."""
    ref = TvVGG(VGG_CFG["vgg11"], num_classes=10)
    _randomize_torch(ref, seed=5)
    model = convert("torchvision", "vgg11", ref.state_dict(), input_shape=(64, 64, 3)).model
    assert model.get_layer("fc1").kernel.shape == (2 * 2 * 512, 4096)
    assert _parity("torchvision vgg11 (top, 64x64: fc1 permuted + pool folded)", ref, model, _images(64) * 20) <= TOL


@requires_torch
def test_torchvision_vgg_bn_is_refused():
    state = TvVGG(VGG_CFG["vgg11"], batch_norm=True).features.state_dict()
    with pytest.raises(ConversionError, match="batch-norm VGG"):
        convert("torchvision", "vgg11", {f"features.{k}": v for k, v in state.items()}, include_top=False,
                input_shape=(32, 32, 3))


# ----------------------------------- FishNet, the authors' code (models/fishnet.py, fish_block.py)
class FishBottleneck(Module):
    """fish_block.Bottleneck: pre-activation; mode UP sums groups of k channels (squeeze_idt)."""

    def __init__(self, inplanes, planes, stride=1, mode="NORM", k=1, dilation=1):
        super().__init__()
        self.mode, self.k = mode, k
        self.relu = nn.ReLU(inplace=True)
        btnk = planes // 4
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.conv1 = nn.Conv2d(inplanes, btnk, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(btnk)
        self.conv2 = nn.Conv2d(btnk, btnk, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn3 = nn.BatchNorm2d(btnk)
        self.conv3 = nn.Conv2d(btnk, planes, 1, bias=False)
        self.shortcut = None
        if mode != "UP" and (inplanes != planes or stride > 1):
            self.shortcut = nn.Sequential(nn.BatchNorm2d(inplanes), self.relu,
                                          nn.Conv2d(inplanes, planes, 1, stride, bias=False))

    def squeeze_idt(self, idt):
        n, c, h, w = idt.size()
        return idt.view(n, c // self.k, self.k, h, w).sum(2)

    def forward(self, x):
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        if self.mode == "UP":
            residual = self.squeeze_idt(x)
        elif self.shortcut is not None:
            residual = self.shortcut(x)
        else:
            residual = x
        return out + residual


class Fish(Module):
    """fishnet.Fish, ported structure for structure (module indices = the checkpoint keys)."""

    def __init__(self, num_cls=1000, num_down_sample=3, num_up_sample=3, trans_map=(2, 1, 0, 6, 5, 4),
                 network_planes=None, num_res_blks=None, num_trans_blks=None):
        super().__init__()
        self.trans_map = trans_map
        self.upsample = nn.Upsample(scale_factor=2)
        self.down_sample = nn.MaxPool2d(2, stride=2)
        self.num_cls, self.num_down, self.num_up = num_cls, num_down_sample, num_up_sample
        self.network_planes = network_planes[1:]
        self.depth = len(self.network_planes)
        self.num_trans_blks, self.num_res_blks = num_trans_blks, num_res_blks
        self.fish = self._make_fish(network_planes[0])

    def _make_score(self, in_ch, out_ch=1000, has_pool=False):
        relu = nn.ReLU(inplace=True)
        conv = nn.Sequential(nn.BatchNorm2d(in_ch), relu, nn.Conv2d(in_ch, in_ch // 2, 1, bias=False),
                             nn.BatchNorm2d(in_ch // 2), relu)
        if has_pool:
            fc = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_ch // 2, out_ch, 1, bias=True))
        else:
            fc = nn.Conv2d(in_ch // 2, out_ch, 1, bias=True)
        return [conv, fc]

    def _make_se_block(self, in_ch, out_ch):
        return nn.Sequential(nn.BatchNorm2d(in_ch), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1),
                             nn.Conv2d(in_ch, out_ch // 16, 1), nn.ReLU(inplace=True),
                             nn.Conv2d(out_ch // 16, out_ch, 1), nn.Sigmoid())

    def _make_residual_block(self, inplanes, outplanes, nstage, is_up=False, k=1, dilation=1):
        if is_up:
            layers = [FishBottleneck(inplanes, outplanes, mode="UP", dilation=dilation, k=k)]
        else:
            layers = [FishBottleneck(inplanes, outplanes, stride=1)]
        layers += [FishBottleneck(outplanes, outplanes, stride=1, dilation=dilation) for _ in range(1, nstage)]
        return nn.Sequential(*layers)

    def _make_stage(self, is_down_sample, inplanes, outplanes, n_blk, has_trans=True, has_score=False,
                    trans_planes=0, no_sampling=False, num_trans=2, **kwargs):
        sample_block = []
        if has_score:
            sample_block.extend(self._make_score(outplanes, outplanes * 2, has_pool=False))
        if no_sampling or is_down_sample:
            res_block = self._make_residual_block(inplanes, outplanes, n_blk, **kwargs)
        else:
            res_block = self._make_residual_block(inplanes, outplanes, n_blk, is_up=True, **kwargs)
        sample_block.append(res_block)
        if has_trans:
            trans_in_planes = self.in_planes if trans_planes == 0 else trans_planes
            sample_block.append(self._make_residual_block(trans_in_planes, trans_in_planes, num_trans))
        if not no_sampling and is_down_sample:
            sample_block.append(self.down_sample)
        elif not no_sampling:
            sample_block.append(self.upsample)
        return nn.ModuleList(sample_block)

    def _make_fish(self, in_planes):
        def get_trans_planes(index):
            map_id = self.trans_map[index - self.num_down - 1] - 1
            return in_planes if map_id == -1 else cated_planes[map_id]

        cated_planes, fish = [in_planes] * self.depth, []
        for i in range(self.depth):
            is_down = i not in range(self.num_down, self.num_down + self.num_up + 1)
            has_trans, no_sampling = i > self.num_down, i == self.num_down
            cur_planes, trans_planes = self.network_planes[i], get_trans_planes(i)
            cur_blocks, num_trans = self.num_res_blks[i], self.num_trans_blks[i - self.num_down - 1]
            if is_down or no_sampling:
                k, dilation = 1, 1
            else:
                k, dilation = cated_planes[i - 1] // cur_planes, 2 ** (i - self.num_down - 1)
            sample_block = self._make_stage(is_down, cated_planes[i - 1], cur_planes, cur_blocks, has_trans=has_trans,
                                            trans_planes=trans_planes, has_score=(i == self.num_down),
                                            num_trans=num_trans, k=k, dilation=dilation, no_sampling=no_sampling)
            if i == self.depth - 1:
                sample_block.extend(self._make_score(cur_planes + trans_planes, out_ch=self.num_cls, has_pool=True))
            elif i == self.num_down:
                sample_block.append(nn.Sequential(self._make_se_block(cur_planes * 2, cur_planes)))
            if i == self.num_down - 1:
                cated_planes[i] = cur_planes * 2
            elif has_trans:
                cated_planes[i] = cur_planes + trans_planes
            else:
                cated_planes[i] = cur_planes
            fish.append(sample_block)
        return nn.ModuleList(fish)

    def forward(self, x):
        feats = [x] + [None] * self.depth
        for i in range(self.depth):
            blks = self.fish[i]
            if i < self.num_down:  # tail: residual stack, pool
                feats[i + 1] = blks[1](blks[0](feats[i]))
            elif i == self.num_down:  # bridge: score, attention, stage(score) * att + att
                score = blks[1](blks[0](feats[i]))
                att = blks[3](score)
                feats[i + 1] = blks[2](score) * att + att
            else:  # refine: trunk = sample(stack(x)), branch = transfer(trans_map), concatenated
                trunk = blks[2](blks[0](feats[i]))
                branch = blks[1](feats[self.trans_map[i - self.num_down - 1]])
                feats[i + 1] = torch.cat([trunk, branch], 1)
        return self.fish[-1][-1](self.fish[-1][-2](feats[-1]))


class FishNet(Module):
    def __init__(self, **kwargs):
        super().__init__()
        inplanes = kwargs["network_planes"][0]
        self.conv1 = self._conv_bn_relu(3, inplanes // 2, stride=2)
        self.conv2 = self._conv_bn_relu(inplanes // 2, inplanes // 2)
        self.conv3 = self._conv_bn_relu(inplanes // 2, inplanes)
        self.pool1 = nn.MaxPool2d(3, padding=1, stride=2)
        self.fish = Fish(**kwargs)

    @staticmethod
    def _conv_bn_relu(in_ch, out_ch, stride=1):
        return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1, stride=stride, bias=False),
                             nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))

    def forward(self, x):
        x = self.pool1(self.conv3(self.conv2(self.conv1(x))))
        return self.fish(x).view(x.size(0), -1)


FISHNET99 = dict(network_planes=[64, 128, 256, 512, 512, 512, 384, 256, 320, 832, 1600],
                 num_res_blks=[2, 2, 6, 2, 1, 1, 1, 1, 2, 2], num_trans_blks=[1, 1, 1, 1, 1, 4])


@requires_torch
def test_fishnet_reference_keys_are_the_published_layout():
    keys = FishNet(**FISHNET99, num_cls=10).state_dict().keys()
    for key in ("fish.fish.0.0.0.bn1.weight", "conv1.0.weight", "conv1.1.running_var", "fish.fish.3.3.0.5.bias",
                "fish.fish.4.0.0.conv3.weight", "fish.fish.9.4.1.weight", "fish.fish.2.0.0.shortcut.2.weight"):
        assert key in keys, key


@requires_torch
def test_fishnet_authors_checkpoint_parity(tmp_path):
    ref = FishNet(**FISHNET99, num_cls=10)
    _randomize_torch(ref)
    path = tmp_path / "fishnet99_ckpt.tar"  # the authors' format: DataParallel keys inside a checkpoint dict
    state = {f"module.{k}": v for k, v in ref.state_dict().items()}
    torch.save({"epoch": 100, "best_prec1": 77.41, "state_dict": state}, path)
    conversion = convert("fishnet", "fishnet99", path, input_shape=(64, 64, 3))
    model = conversion.model
    assert conversion.build["num_classes"] == 10
    assert _parity("FishNet authors -> fishnet99", ref, model, _images(64)) <= TOL


# ------------------------------------------------------------------- output files, publishing
@requires_torch
def test_convert_writes_publishable_inference_weights(tmp_path, monkeypatch):
    from zoo.weights import load_weights, publish_file

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setenv("ZOO_WEIGHTS_MANIFEST", str(tmp_path / "manifest.json"))
    ref = TvResNet(TvBasicBlock, (2, 2, 2, 2), num_classes=10)
    _randomize_torch(ref, seed=7)
    out = tmp_path / "out" / "resnet18-test.weights.h5"
    net = convert("torchvision", "resnet18", ref, out, input_shape=(64, 64, 3)).model
    side = json.loads((tmp_path / "out" / "resnet18-test.weights.h5.json").read_text())
    assert side["build"] == {"input_shape": [64, 64, 3], "num_classes": 10} and side["preprocessing"]["kind"] == "torch"
    entry = publish_file(out, "resnet18", "synthetic", manifest=tmp_path / "manifest.json", metrics={"note": "random"})
    shards = entry.packaged_files()  # a float32 ResNet-18 is over 16 MiB: packaged as shards
    assert entry.file is None and [p.name for p in shards] == [
        f"resnet18-synthetic-{entry.sha256[:8]}.weights.h5.shard{i:02d}" for i in range(len(shards))]
    assert len(shards) == -(-entry.size // 2**24)
    model = load_weights("resnet18", "synthetic", include_preprocessing=True)  # raw 0..255 RGB in
    rgb = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    mean = 255 * np.array([0.485, 0.456, 0.406], "float32")
    std = 255 * np.array([0.229, 0.224, 0.225], "float32")
    expected = _torch_logits(ref, (rgb - mean) / std)
    assert np.abs(model(rgb).numpy() - expected).max() <= TOL
    assert np.abs(net((rgb - mean) / std).numpy() - expected).max() <= TOL
    from_file = load_weights("resnet18", out, include_preprocessing=True)  # build options, preprocessing: the sidecar
    assert np.abs(from_file(rgb).numpy() - expected).max() <= TOL
    for network in (load_weights("resnet18", out), load_weights("resnet18", "synthetic")):  # same default: the network
        assert network.name == "resnet18" and np.abs(network((rgb - mean) / std).numpy() - expected).max() <= TOL
