"""airbench94/96 (Jordan 2024) against the authors' network definition, and the whitening and
identity initialisation they need."""
from __future__ import annotations

import keras
import numpy as np
import pytest

import zoo
from zoo.layers.whitening import PartialDirac, PatchWhitening, fit_whitening, patch_covariance, whitening_kernel

# Trainable parameters of make_net() in legacy/airbench94.py / airbench96.py (KellerJordan/cifar10-airbench):
# whitening bias 24 (its 288 weights are frozen), 3x3 convs without bias, BatchNorm biases only, linear 256x10.
#   94: 24 + 9*(24*64 + 64*64 + 64*256 + 256*256 + 256*256 + 256*256) + 2*(64+256+256) + 2560
#   96: 24 + 9*(24*128 + 2*128*128 + 128*384 + 2*384*384 + 384*512 + 2*512*512) + 3*(128+384+512) + 5120
TRAINABLE = {"airbench94": 1_971_352, "airbench96": 9_915_416}


def trainable(model) -> int:
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.mark.parametrize("name", sorted(TRAINABLE))
def test_parameter_count_is_the_authors(name):
    model = zoo.build(name)
    assert trainable(model) == TRAINABLE[name]
    assert not model.get_layer("whiten").kernel.trainable and model.get_layer("whiten").bias.trainable
    assert model.output.shape == (None, 10)


def _torch_airbench94(torch):
    """The authors' make_net() for airbench94 (written from legacy/airbench94.py), in float32."""
    nn = torch.nn

    class Group(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.conv1, self.pool = nn.Conv2d(cin, cout, 3, padding="same", bias=False), nn.MaxPool2d(2)
            self.norm1 = nn.BatchNorm2d(cout, eps=1e-12, momentum=0.4)
            self.conv2 = nn.Conv2d(cout, cout, 3, padding="same", bias=False)
            self.norm2 = nn.BatchNorm2d(cout, eps=1e-12, momentum=0.4)
            self.activ = nn.GELU()

        def forward(self, x):
            x = self.activ(self.norm1(self.pool(self.conv1(x))))
            return self.activ(self.norm2(self.conv2(x)))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.whiten = nn.Conv2d(3, 24, 2, padding=0, bias=True)
            self.groups = nn.Sequential(Group(24, 64), Group(64, 256), Group(256, 256))
            self.fc = nn.Linear(256, 10, bias=False)

        def forward(self, x):
            x = self.groups(nn.functional.gelu(self.whiten(x)))
            return self.fc(torch.flatten(nn.functional.max_pool2d(x, 3), 1)) / 9

    return Net()


def test_outputs_match_the_authors_network():
    torch = pytest.importorskip("torch")
    model = zoo.build("airbench94")
    rng = np.random.default_rng(0)
    for layer in model.layers:  # non-trivial BatchNorm statistics and biases
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.beta.assign(rng.normal(0, 0.3, layer.beta.shape))
            layer.moving_mean.assign(rng.normal(0, 0.3, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 2, layer.moving_variance.shape))
    net = _torch_airbench94(torch).eval()
    conv = lambda k: torch.tensor(np.transpose(k.numpy(), (3, 2, 0, 1)))  # noqa: E731  HWIO -> OIHW
    with torch.no_grad():
        net.whiten.weight.copy_(conv(model.get_layer("whiten").kernel))
        net.whiten.bias.copy_(torch.tensor(rng.normal(0, 0.1, 24)))
        model.get_layer("whiten").bias.assign(net.whiten.bias.numpy())
        for i, group in enumerate(net.groups, 1):
            for j in (1, 2):
                getattr(group, f"conv{j}").weight.copy_(conv(model.get_layer(f"block{i}_conv{j}").kernel))
                bn, norm = model.get_layer(f"block{i}_conv{j}_bn"), getattr(group, f"norm{j}")
                norm.bias.copy_(torch.tensor(bn.beta.numpy()))
                norm.running_mean.copy_(torch.tensor(bn.moving_mean.numpy()))
                norm.running_var.copy_(torch.tensor(bn.moving_variance.numpy()))
        net.fc.weight.copy_(torch.tensor(model.get_layer("fc").kernel.numpy().T))
        x = rng.normal(0, 1, (4, 32, 32, 3)).astype("float32")
        theirs = net(torch.tensor(x).permute(0, 3, 1, 2)).numpy()
    np.testing.assert_allclose(model.predict(x, verbose=0), theirs, rtol=1e-4, atol=1e-5)
    assert sum(p.numel() for p in net.parameters()) - 24 * 3 * 4 - 2 * 576 == TRAINABLE["airbench94"]


@pytest.mark.parametrize("choice", ["avg", "conv", "blur", "s2d"])
def test_every_site_takes_every_choice_at_the_published_sizes(choice):
    model = zoo.build("airbench94", downsample=choice, features_only=True)
    assert [tuple(o.shape[1:3]) for o in model.outputs] == [(15, 15), (7, 7), (3, 3)]
    assert zoo.build("airbench94", downsample=choice).output.shape == (None, 10)
    assert [s.name for s in zoo.sites("airbench94")] == ["block1", "block2", "block3", "head"]


def test_strided_choice_strides_the_block_convolution_itself():
    model = zoo.build("airbench94", downsample={"block*": "conv"})
    assert model.get_layer("block1_conv1").strides == (2, 2)
    assert trainable(model) == TRAINABLE["airbench94"]  # nothing added: the same convolutions, strided


def test_partial_dirac_passes_the_first_channels_through():
    layer = keras.layers.Conv2D(7, 3, padding="same", use_bias=False, kernel_initializer=PartialDirac(seed=1))
    x = np.random.default_rng(2).normal(size=(2, 6, 6, 4)).astype("float32")
    y = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(y[..., :4], x, atol=1e-6)
    kernel = layer.kernel.numpy()
    assert np.abs(kernel[..., 4:]).max() > 0 and np.abs(kernel[..., 4:]).max() <= 1 / np.sqrt(9 * 4) + 1e-6


def test_whitening_kernel_is_the_eigendecomposition_of_the_patch_covariance():
    rng = np.random.default_rng(3)
    images = rng.normal(size=(20, 8, 8, 3)) @ rng.normal(size=(3, 3)) + 0.5  # correlated channels
    cov = patch_covariance(images, 2)
    patches = np.stack([images[:, i:i + 2, j:j + 2, :].reshape(20, -1) for i in range(7) for j in range(7)], 1)
    np.testing.assert_allclose(cov, patches.reshape(-1, 12).T @ patches.reshape(-1, 12) / (20 * 49), rtol=1e-10)
    kernel = whitening_kernel(cov, 2, 3, eps=0.0)
    assert kernel.shape == (2, 2, 3, 24)
    w = kernel.reshape(12, 24)
    values = np.linalg.eigvalsh(cov)[::-1]
    np.testing.assert_allclose(w[:, :12].T @ cov @ w[:, :12], np.eye(12), atol=1e-6)  # whitened
    np.testing.assert_allclose(w[:, 12:], -w[:, :12])
    np.testing.assert_allclose(np.sum(w[:, :12] ** 2, 0), 1 / values, rtol=1e-6)  # decreasing eigenvalue order


def test_fit_whitening_sets_the_frozen_kernel():
    layer = PatchWhitening(24, 2, padding="valid")
    images = np.random.default_rng(4).uniform(size=(10, 8, 8, 3)).astype("float32")
    layer.build((None, 8, 8, 3))
    kernel = fit_whitening(layer, images, eps=5e-4)
    np.testing.assert_allclose(layer.kernel.numpy(), kernel)
    assert [w.name for w in layer.trainable_weights] == ["bias"]
    with pytest.raises(ValueError, match="needs 24 filters"):
        small = PatchWhitening(12, 2, padding="valid")
        small.build((None, 8, 8, 3))
        fit_whitening(small, images)
