"""The one downsampling factory every family uses.

A *site* is a place where an architecture halves the resolution. Two kinds exist:

- a **pool site** (``role="pool"``): the published network pools there (All-CNN's Model C,
  VGG, SqueezeNet, the ResNet and FishNet stems, FishNet's tail and head);
- a **conv site** (``role="conv"``): the published network puts a stride on a convolution there
  (All-CNN-C, Strided-CNN-C, ResNet stage transitions, stems);
- a **shortcut site** (``role="shortcut"``): the skip path of a residual unit that must follow the
  resolution of its main path (``follows`` names the main site).

A pool or conv site may also ``follow`` another: a *mirror* site downsamples again what an
up-sampling undid (FishNet's head pools mirror its tail pools, so their outputs concatenate). Like
a shortcut it is ``none`` exactly when its main site is, and it adds nothing to the total stride.

Every site accepts the same choices (:data:`CHOICES`). At a conv site a pooling choice keeps the
convolution at stride 1 and pools after it, so ``all_cnn_c`` with ``"max"`` is ConvPool-CNN-C
(Springenberg et al. 2015, §3.1) and ``strided_cnn_c`` with ``"max"`` is Model C. At a pool site
``"conv"`` puts a learned 3×3 stride-2 convolution in place of the pool (All-CNN, §3.1).

- ``max`` / ``avg``: max or average pooling.
- ``conv``: strided convolution.
- ``blur``: anti-aliased downsampling, Zhang 2019 ("Making CNNs shift-invariant again", §3.2):
  MaxBlurPool at pool sites (max 2×2 stride 1, then a binomial blur with stride 2) and
  ConvBlurPool at conv sites. Option ``filter_size`` (default 3).
- ``s2d``: space-to-depth, Sunkara & Luo 2022 ("No more strided convolutions or pooling", SPD-Conv):
  a lossless 2×2 space-to-depth followed by a stride-1 convolution (a 1×1 back to the input width
  at pool sites).
- ``none``: no downsampling (the site keeps the resolution; used by ``output_stride``).

Every choice at a site produces the output size of the published operation, so any mix of
choices builds. Padding is explicit and symmetric where the published (PyTorch) network pads
symmetrically, which keeps converted weights numerically identical.
"""
from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Literal, Mapping, Sequence

import keras
from keras import layers

from zoo.layers.geometry import out_size, pads_for  # noqa: F401  (re-exported)
from zoo.errors import ZooError, unknown
from zoo.layers.ops import BlurPool2D, SpaceToDepth

CHOICES: tuple[str, ...] = ("max", "avg", "conv", "blur", "s2d", "none")
CHOICE_OPTIONS: dict[str, dict[str, tuple[int, ...]]] = {"blur": {"filter_size": (2, 3, 4, 5, 6, 7)}}

Role = Literal["pool", "conv", "shortcut"]


@dataclass(frozen=True)
class Choice:
    """A downsampling choice and its options (only ``blur`` has one: ``filter_size``)."""

    kind: str
    filter_size: int = 3

    @classmethod
    def parse(cls, spec: "str | Mapping[str, Any] | Choice", where: str = "") -> "Choice":
        """``"max"``, ``"blur"``, ``"blur5"`` or ``{"type": "blur", "filter_size": 5}`` → Choice."""
        if isinstance(spec, Choice):
            return spec
        if isinstance(spec, Mapping):
            spec = dict(spec)
            kind = spec.pop("type", spec.pop("kind", None))
            if kind is None:
                raise ZooError(f"downsampling choice {spec!r}{where} needs a 'type' key, one of {', '.join(CHOICES)}.")
            choice = cls.parse(str(kind), where)
            allowed = CHOICE_OPTIONS.get(choice.kind, {})
            for key, value in spec.items():
                if key not in allowed:
                    raise ZooError(
                        f"downsampling choice {choice.kind!r}{where} has no option {key!r}; "
                        f"its options: {', '.join(allowed) or 'none'}."
                    )
                if not isinstance(value, int) or value not in allowed[key]:
                    raise ZooError(f"{choice.kind} option {key}={value!r}{where} must be one of {allowed[key]}.")
            return replace(choice, **spec)
        if not isinstance(spec, str):
            raise ZooError(
                f"a downsampling choice{where} must be a string or a dict, got {type(spec).__name__} {spec!r}; "
                f"valid choices: {', '.join(CHOICES)}."
            )
        text = spec.strip().lower()
        if text.startswith("blur") and text[4:].isdigit():
            return cls.parse({"type": "blur", "filter_size": int(text[4:])}, where)
        if text not in CHOICES:
            raise unknown("downsampling choice" + where, spec, CHOICES)
        return cls(text)

    def __str__(self) -> str:
        return f"blur{self.filter_size}" if self.kind == "blur" and self.filter_size != 3 else self.kind


@dataclass(frozen=True)
class Site:
    """A named downsampling site of an architecture (see the module docstring for roles)."""

    name: str
    role: Role
    default: str
    doc: str = ""
    stride: int = 2
    follows: str | None = None  # shortcut and mirror sites: the site whose resolution they follow

    @property
    def cumulative(self) -> bool:
        """Whether this site adds to the network's total reduction (shortcut and mirror sites do not)."""
        return self.role != "shortcut" and self.follows is None


def sites_table(sites: Sequence[Site], choices: Mapping[str, Choice] | None = None) -> list[dict[str, str]]:
    """Rows (name, role, default, current choice, description) for reports and ``zoo info``."""
    choices = choices or {}
    return [
        {"site": s.name, "role": s.role, "default": s.default,
         "choice": str(choices.get(s.name, s.default)), "doc": s.doc}
        for s in sites
    ]


def resolve_choices(
    sites: Sequence[Site], downsample: "str | Mapping[str, Any] | None", model: str = "this model"
) -> dict[str, Choice]:
    """Per-site choices from the user's ``downsample`` option.

    ``None`` keeps the published choices; a string applies one choice to every main-path site
    (shortcut sites keep following their main site); a mapping sets sites by name or glob pattern
    (``{"stage*": "max", "shortcut*": "avg"}``), later keys winning.
    """
    by_name = {s.name: s for s in sites}
    resolved = {s.name: Choice.parse(s.default) for s in sites}
    if downsample is None:
        return resolved
    if isinstance(downsample, (str, Choice)) or (isinstance(downsample, Mapping) and "type" in downsample):
        choice = Choice.parse(downsample, f" for {model}")
        for s in sites:
            if s.role != "shortcut":
                resolved[s.name] = choice
        return _align_shortcuts(sites, resolved, explicit=set(), model=model)
    if not isinstance(downsample, Mapping):
        raise ZooError(
            f"downsample must be a choice (one of {', '.join(CHOICES)}) or a mapping site -> choice, "
            f"got {type(downsample).__name__}."
        )
    explicit: set[str] = set()
    for pattern, spec in downsample.items():
        matched = [n for n in by_name if fnmatch.fnmatchcase(n, str(pattern))]
        if not matched:
            raise unknown(f"downsampling site of {model}", pattern, by_name)
        for name in matched:
            resolved[name] = Choice.parse(spec, f" site {name!r} of {model}")
            explicit.add(name)
    return _align_shortcuts(sites, resolved, explicit, model)


def _align_shortcuts(sites: Sequence[Site], resolved: dict[str, Choice], explicit: set[str], model: str) -> dict[str, Choice]:
    """Shortcut and mirror sites go to ``none`` exactly when their main site does."""
    for s in sites:
        if s.follows is None:
            continue
        main_none = resolved[s.follows].kind == "none"
        if main_none:
            resolved[s.name] = Choice("none")
        elif resolved[s.name].kind == "none":
            if s.name in explicit:
                raise ZooError(
                    f"site {s.name!r} of {model} cannot be 'none' while {s.follows!r} downsamples "
                    f"({resolved[s.follows]}): it must follow that site's resolution ({s.doc or s.role})."
                )
            resolved[s.name] = Choice.parse(s.default)
    return resolved


@dataclass
class SitePlan:
    """The downsampling plan of one build: per-site choices plus ``output_stride`` bookkeeping.

    Builders call :meth:`take` at each site in forward order; once the reduction reached
    ``output_stride``, later sites become ``none`` and the convolutions after them dilate
    (Chen et al. 2017, DeepLab, atrous convolution §3.1), the same contract as timm's
    ``output_stride``.
    """

    sites: Sequence[Site]
    choices: dict[str, Choice]
    output_stride: int | None = None
    reduction: int = 1
    dilation: int = 1
    taken: dict[str, Choice] = field(default_factory=dict)

    @classmethod
    def create(cls, sites: Sequence[Site], downsample: Any = None, output_stride: int | None = None,
               model: str = "this model") -> "SitePlan":
        choices = resolve_choices(sites, downsample, model)
        if output_stride is not None:
            full = math.prod(s.stride for s in sites if s.cumulative and choices[s.name].kind != "none")
            valid = [2 ** k for k in range(0, int(math.log2(max(full, 1))) + 1)]
            if not isinstance(output_stride, int) or output_stride not in valid:
                raise ZooError(
                    f"output_stride={output_stride!r} is not possible for {model}: its downsampling sites "
                    f"reduce by {full}; choose one of {valid}."
                )
        return cls(sites=list(sites), choices=choices, output_stride=output_stride)

    @property
    def total_stride(self) -> int:
        """The reduction of the whole network once every site is taken as planned."""
        stride, limit = 1, self.output_stride or 10**9
        for s in self.sites:
            if s.cumulative and self.choices[s.name].kind != "none" and stride * s.stride <= limit:
                stride *= s.stride
        return stride

    def take(self, name: str) -> tuple[Choice, int]:
        """The effective choice at site ``name`` and the dilation for the convolution *at* the site."""
        site = next((s for s in self.sites if s.name == name), None)
        if site is None:  # a builder bug, not a user error
            raise KeyError(f"site {name!r} was not declared; declared: {[s.name for s in self.sites]}")
        if not site.cumulative:  # shortcut or mirror: none exactly when its main site was taken as none
            choice = self.taken.get(site.follows, Choice("none"))
            choice = Choice("none") if choice.kind == "none" else self.choices[name]
            self.taken[name] = choice
            return choice, self.dilation
        choice, dilation_here = self.choices[name], self.dilation
        if choice.kind != "none":
            if self.output_stride is not None and self.reduction * site.stride > self.output_stride:
                choice = Choice("none")
                self.dilation *= site.stride
            else:
                self.reduction *= site.stride
        self.taken[name] = choice
        return choice, dilation_here


ConvFn = Callable[..., keras.KerasTensor]
"""``conv_fn(x, filters=None, kernel_size=None, strides=1, padding="same", dilation_rate=1, name=...)``
builds the family's convolution (+ norm + activation); ``filters``/``kernel_size`` of None mean the
site's own convolution."""


def _pad(x, pads: tuple[int, int], name: str):
    if pads == (0, 0):
        return x
    return layers.ZeroPadding2D((pads, pads), name=name)(x)


def _spatial(x) -> int | None:
    return x.shape[1]


def _pool(x, kind: str, kernel: int, stride: int, target: int | None, name: str, prefer: int | str | None = None):
    pads = pads_for(_spatial(x), kernel, stride, target, prefer)
    x = _pad(x, pads, f"{name}_pad")
    cls = layers.MaxPooling2D if kind == "max" else layers.AveragePooling2D
    return cls(kernel, strides=stride, padding="valid", name=f"{name}_{kind}pool")(x)


def _blur(x, choice: Choice, stride: int, target: int | None, name: str):
    pads = pads_for(_spatial(x), choice.filter_size, stride, target)
    return BlurPool2D(choice.filter_size, stride, pads, name=f"{name}_blur")(x)


def _space_to_depth(x, stride: int, target: int | None, name: str):
    size = _spatial(x)
    if size is not None and size % stride and target == size // stride:  # the published op rounds down
        x = layers.Cropping2D(((0, size % stride), (0, size % stride)), name=f"{name}_s2d_crop")(x)
        size -= size % stride
    elif size is not None and size % stride:
        x = layers.ZeroPadding2D(((0, 1), (0, 1)), name=f"{name}_s2d_pad")(x)
        size += 1
    if size is not None and target is not None and size // stride != target:
        raise ZooError(f"s2d at {name!r} gives {size // stride} px where this site needs {target} px; choose another choice.")
    return SpaceToDepth(stride, name=f"{name}_s2d")(x)


def pool_site(
    x,
    choice: Choice,
    *,
    conv_fn: ConvFn,
    kernel: int = 3,
    stride: int = 2,
    pad: int | str = 1,
    name: str,
    dilation: int = 1,
):
    """Apply a pool site. ``kernel``/``stride``/``pad`` describe the published pool.

    ``conv_fn`` builds a width-preserving convolution for the ``conv`` and ``s2d`` choices.
    """
    if choice.kind == "none":
        return x
    target = out_size(_spatial(x), kernel, stride, pad)
    channels = x.shape[-1]
    if choice.kind in ("max", "avg"):
        return _pool(x, choice.kind, kernel, stride, target, name, prefer=pad)
    if choice.kind == "blur":
        x = layers.MaxPooling2D(2, strides=1, padding="same", name=f"{name}_maxpool_s1")(x)
        return _blur(x, choice, stride, target, name)
    if choice.kind == "conv":
        x = _pad(x, pads_for(_spatial(x), 3, stride, target), f"{name}_pad")
        return conv_fn(x, filters=channels, kernel_size=3, strides=stride, padding="valid", name=f"{name}_conv")
    if choice.kind == "s2d":
        x = _space_to_depth(x, stride, target, name)
        return conv_fn(x, filters=channels, kernel_size=1, strides=1, padding="valid", name=f"{name}_conv")
    raise ZooError(f"unhandled downsampling choice {choice}")  # parse() already rejects unknown kinds


def conv_site(
    x,
    choice: Choice,
    *,
    conv_fn: ConvFn,
    kernel: int,
    stride: int = 2,
    pad: int | None = None,
    pool_kernel: int = 3,
    name: str,
    dilation: int = 1,
    target: int | None = None,
):
    """Apply a conv site: the published stride-``stride`` convolution of size ``kernel``.

    ``target`` is the site's published output size where it is not the strided convolution's
    (airbench's ``same`` convolution then 2×2 max-pool halves 31 px to 15, where a padded 3×3/2
    convolution would give 16): every choice then reaches it (the strided one unpadded).
    ``pad`` is its published symmetric padding (default ``(kernel-1)//2``). Pooling choices run the
    convolution at stride 1 and pool after it with a ``pool_kernel`` window; ``s2d`` runs it at
    stride 1 on the space-to-depth input (SPD-Conv); ``none`` runs it at stride 1, size-preserving.
    With another ``pad`` (SqueezeNet's unpadded conv1) the stride-1 convolution of the pooling
    choices keeps that padding and the one after ``s2d`` is padded to the site's output size, so
    every choice still gives the published size.
    """
    size = _spatial(x)
    pad = (kernel - 1) // 2 if pad is None else pad
    target = out_size(size, kernel, stride, pad) if target is None else target
    same = dict(strides=1, padding="same", dilation_rate=dilation)
    if choice.kind == "none":
        return conv_fn(x, name=name, **same)
    if choice.kind == "conv":
        x = _pad(x, pads_for(size, kernel, stride, target, pad), f"{name}_pad")
        return conv_fn(x, strides=stride, padding="valid", name=name)
    if pad != (kernel - 1) // 2 and size is not None:  # not "same" at stride 1: pad explicitly
        span = dilation * (kernel - 1) + 1
        if choice.kind == "s2d":
            x = _space_to_depth(x, stride, None, name)
            want = target
        else:
            want = size + 2 * pad - kernel + 1
        x = _pad(x, pads_for(_spatial(x), span, 1, want), f"{name}_pad")
        y = conv_fn(x, name=name, strides=1, padding="valid", dilation_rate=dilation)
        if choice.kind == "s2d":
            return y
    elif choice.kind == "s2d":
        x = _space_to_depth(x, stride, target, name)
        return conv_fn(x, name=name, **same)
    else:
        y = conv_fn(x, name=name, **same)
    if choice.kind in ("max", "avg"):
        return _pool(y, choice.kind, pool_kernel, stride, target, name)
    if choice.kind == "blur":
        return _blur(y, choice, stride, target, name)
    raise ZooError(f"unhandled downsampling choice {choice}")


def shortcut_site(x, choice: Choice, *, target: int | None, project: ConvFn | None, name: str):
    """Apply a shortcut site: the skip path of a residual unit whose main path downsamples.

    ``conv`` is the published strided path (a 1×1 stride-2 projection, or plain subsampling for
    He et al.'s option A when ``project`` is None). Pooling choices pool first and project at
    stride 1 (``avg`` is ResNet-D, He et al. 2019 "Bag of Tricks" §4.1); ``s2d`` rearranges first.
    """
    if choice.kind == "conv":
        if project is not None:
            return project(x, strides=2, name=f"{name}_proj")
        return layers.MaxPooling2D(1, strides=2, name=f"{name}_subsample")(x)
    if choice.kind in ("max", "avg"):
        x = _pool(x, choice.kind, 2, 2, target, name)
    elif choice.kind == "blur":
        x = _blur(x, choice, 2, target, name)
    elif choice.kind == "s2d":
        x = _space_to_depth(x, 2, target, name)
    return project(x, strides=1, name=f"{name}_proj") if project is not None else x
