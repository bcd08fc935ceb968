"""The recipe schema: a recipe's six sections as dataclasses, with their defaults and meaning.

A recipe is a YAML file with six sections (``model``, ``data``, ``optimizer``, ``schedule``,
``train``, ``output``) that map onto the dataclasses below; :mod:`zoo.training.recipe` loads,
overrides, validates and resolves them.

Weight decay
    ``optimizer.weight_decay_mode: l2`` (the default for SGD and Adam) is the papers' coupled
    L2 weight decay, as in Caffe and PyTorch's ``SGD(weight_decay=...)``: the gradient of every
    weight tensor of rank >= 2 (convolution and dense kernels; not biases or batch-norm
    scales/offsets) gets ``weight_decay * w`` added before momentum, implemented as a
    ``keras.regularizers.L2(weight_decay / 2)`` penalty on those variables. The per-epoch
    ``loss``/``val_loss`` therefore include the penalty; the final evaluation in the report does
    not. ``decoupled`` (the default and only choice for ``adamw``) uses the Keras optimizer's
    ``weight_decay`` (Loshchilov & Hutter 2019: ``w -= lr * weight_decay * w``), again on
    rank >= 2 tensors only. ``optimizer.decay_biases: true`` decays every trainable tensor
    instead (biases and BatchNorm offsets too), as airbench does (Jordan 2024, arXiv 2404.00498:
    the authors' PyTorch ``SGD(weight_decay=...)`` param groups hold every trained parameter).

Airbench's recipe features (Jordan 2024), each usable by any model:
    ``optimizer.bn_bias_lr_scale`` (§3.3, BatchNorm biases at 64x the rate), ``train.lookahead``
    (§3.6), ``train.whitening_images``/``whitening_eps``/``whitening_bias_epochs`` (§3.2: a model
    with a :class:`zoo.layers.whitening.PatchWhitening` layer), ``data.augment: alternating_flip``
    (§3.5) and ``translate2``, ``data.eval_tta`` (§3.7).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from zoo.errors import ZooError


class RecipeError(ZooError):
    """A recipe that cannot be loaded: unknown file or field, wrong type or impossible value."""


# ------------------------------------------------------------------------------------- sections
@dataclass
class ModelSection:
    """``name`` of a registered model; every other key is a build option passed to
    :func:`zoo.models.registry.build` (``downsample``, ``stem``, ``dropout``, ...)."""

    name: str = "resnet20"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataSection:
    """What to train on and how to feed it (see :func:`zoo.data.load` / ``make_pipeline``).

    ``validation`` is a count of held-out training images (int, e.g. 5000 for CIFAR's 45k/5k
    split, He et al. 2016 §4.2) or a fraction (float < 1); 0 trains on everything.
    ``eval_split`` is evaluated once after training (e.g. ``test``) when the source has it.
    ``augment`` names :data:`zoo.data.AUGMENTATIONS`: ``alternating_flip`` is airbench's
    derandomised flip (Jordan 2024 §3.5: image ``i`` is mirrored in epoch ``e`` iff ``b_i XOR (e
    odd)``, ``b_i`` a fixed random bit of the image, so every image is seen both ways every two
    epochs); ``translate2`` a random shift of up to 2 pixels each way with reflection padding
    (the authors' ``hyp['aug']['translate'] = 2``; ``crop_pad4`` is He et al.'s 4-pixel zero padding).
    ``eval_tta``: the final evaluation also reports the accuracy under test-time augmentation
    (:mod:`zoo.training.tta`, airbench §3.7): ``mirror`` averages the image's and its mirror's
    logits, ``mirror_translate`` adds the one-pixel translations (six views); ``none`` (default)
    evaluates the image alone.
    """

    source: str = "embedded"
    split: str = "train"
    validation: int | float = 0.1
    seed: int = 0
    batch_size: int = 128
    augment: list[str] = field(default_factory=list)
    eval_augment: list[str] = field(default_factory=list)
    normalization: str = "per_channel"
    image_size: int | None = None
    data_dir: str | None = None
    manual_dir: str | None = None
    limit: int | None = None
    cache: bool = True
    shuffle_buffer: int = 10000
    eval_split: str | None = None
    eval_tta: Literal["none", "mirror", "mirror_translate"] = "none"


@dataclass
class OptimizerSection:
    """Optimizer and weight decay; see the module docstring for ``weight_decay_mode``.

    ``weight_decay_mode`` of ``None`` means ``l2`` for sgd/adam and ``decoupled`` for adamw.
    ``bn_bias_lr_scale``: BatchNorm biases (offsets) train at this multiple of the learning rate,
    their weight decay unscaled (Jordan 2024 §3.3: 64; :mod:`zoo.training.param_groups`).
    ``decay_biases``: weight decay on every trainable tensor, not only those of rank >= 2.
    """

    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    weight_decay_mode: Literal["l2", "decoupled"] | None = None
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7
    clipnorm: float | None = None
    bn_bias_lr_scale: float = 1.0
    decay_biases: bool = False

    @property
    def decay_mode(self) -> str:
        """The weight-decay mode in effect."""
        if self.weight_decay_mode:
            return self.weight_decay_mode
        return "decoupled" if self.name == "adamw" else "l2"


@dataclass
class ScheduleSection:
    """Learning-rate schedule, evaluated per step; times are in (fractional) epochs.

    - ``constant``: ``lr``;
    - ``step``: ``lr * gamma ** (milestones passed)`` (He et al. 2016 §4.2; Springenberg et al.
      2015 §3.1);
    - ``cosine``: half-cosine from ``lr`` to ``lr * final_factor`` (Loshchilov & Hutter 2017);
    - ``linear``: linear fall from ``lr`` to ``lr * final_factor`` (Caffe's ``poly`` policy with
      power 1, the SqueezeNet solver, Iandola et al. 2016);
    - ``onecycle``: linear rise then linear fall to ``lr * final_factor`` (Smith & Topin 2019);
      without ``warmup_epochs`` it rises over the first 30% of the schedule.

    Each may start with ``warmup_epochs`` of linear warm-up from ``lr * start_factor`` (Goyal et
    al. 2017 §2.2); for ``onecycle`` the warm-up is the rising half. ``epochs`` of ``None``
    stretches the schedule over ``train.epochs``. ``cycles`` > 1 splits the time after the
    warm-up into that many equal cycles and restarts the decay at each (SGDR with a constant
    cycle length, Loshchilov & Hutter 2017 §3; the cyclical rate of SWA, Izmailov et al. 2018 §3.1).
    """

    name: Literal["constant", "step", "cosine", "linear", "onecycle"] = "constant"
    epochs: float | None = None
    warmup_epochs: float = 0.0
    start_factor: float = 0.1
    milestones: list[float] = field(default_factory=list)
    gamma: float = 0.1
    final_factor: float = 0.0
    cycles: int = 1


@dataclass
class TrainSection:
    """The training loop.

    ``nan_policy``: ``stop`` ends training at the first NaN/Inf loss, keeps the last good
    checkpoint and reports status ``nan``; ``raise`` does the same and then raises.
    ``deterministic`` enables TensorFlow op determinism (bit-identical reruns on one machine).
    ``jit_compile`` is off by default (XLA was slower on the CPUs measured: results/benchmarks/RUN.md).
    ``precision``: ``auto`` takes the device policy's decision for this machine and model (a short
    calibration, cached: :func:`zoo.training.device.resolve_policy`), or a Keras dtype policy to force one.
    ``progress``: ``auto`` draws a progress bar on a terminal and one line per epoch otherwise.
    ``init_weights``: start from these weights instead of a random initialisation (a run directory
    or its ``model.weights.h5``, the same model and normalisation): a warm restart in the sense of
    SGDR (Loshchilov & Hutter 2017 §3), or fine-tuning. A resumed run continues from its own
    checkpoints, not from these.
    ``swa_start_epoch``: stochastic weight averaging (Izmailov et al. 2018 §3): from this epoch
    (1-based) on, the weights at the end of every epoch join a running average, which becomes the
    final model once its BatchNorm statistics are recomputed on the training images (§3.2). ``0``
    (default) keeps the last epoch's weights. Pair it with a constant or high final rate (§3.1).
    ``swa_every``: average only every that many epochs from ``swa_start_epoch``: with
    ``schedule.cycles``, the ends of the cycles, where the rate is lowest (§3.1's cyclical rate).
    ``teachers``: knowledge distillation (Hinton et al. 2015 §2; :mod:`zoo.training.distill`): trained
    models (``NAME:TAG``, ``NAME:PATH`` or a ``.keras`` file / run directory) whose softened
    probabilities, averaged, the student also learns; ``distill_weight`` is the share of the loss
    they get (the labels get the rest), ``distill_temperature`` the softening ``T``;
    ``distill_flip`` also shows the teachers each image's horizontal mirror and averages the two
    views (a better target at twice the teachers' cost).
    ``lookahead``: lookahead weight averaging (Jordan 2024 §3.6, after Zhang et al. 2019;
    :mod:`zoo.training.lookahead`): ``{every: 5, base: 0.774, power: 3}`` moves a running average
    towards the weights every ``every`` steps with decay ``base * (step / total) ** power`` and sets
    the weights to it; the final weights are the average. ``null`` (default): off.
    ``whitening_images``: initialise the model's :class:`~zoo.layers.whitening.PatchWhitening`
    layer from the patch covariance of the first this many training images, normalised as the
    model sees them, with ``whitening_eps`` added to the eigenvalues (Jordan 2024 §3.2: 5000
    images, eps 5e-4); ``0`` (default) keeps its initialisation. ``whitening_bias_epochs``: the
    whitening layer's bias trains for the first this many epochs only, then is frozen (airbench:
    3); ``0`` (default) never freezes it.
    """

    epochs: int = 10
    seed: int = 0
    label_smoothing: float = 0.0
    deterministic: bool = True
    steps_per_epoch: int | None = None
    nan_policy: Literal["stop", "raise"] = "stop"
    jit_compile: bool = False
    steps_per_execution: int = 1
    progress: Literal["auto", "bar", "epoch", "none"] = "auto"
    precision: Literal["auto", "float32", "mixed_bfloat16", "mixed_float16"] = "auto"
    init_weights: str | None = None
    swa_start_epoch: int = 0
    swa_every: int = 1
    teachers: list[str] = field(default_factory=list)
    distill_weight: float = 0.9
    distill_temperature: float = 4.0
    distill_flip: bool = False
    lookahead: dict[str, Any] | None = None
    whitening_images: int = 0
    whitening_eps: float = 5e-4
    whitening_bias_epochs: int = 0


@dataclass
class OutputSection:
    """Where runs go: ``runs_dir/name``, ``name`` defaulting to ``<recipe>-<model>``."""

    runs_dir: str = "runs"
    name: str | None = None
    tensorboard: bool = True


SECTIONS: dict[str, type] = {
    "model": ModelSection, "data": DataSection, "optimizer": OptimizerSection,
    "schedule": ScheduleSection, "train": TrainSection, "output": OutputSection,
}
TOP_LEVEL = ("name", "description", *SECTIONS)
# fields that do not change what is trained: a run may be resumed with them changed
COSMETIC = {"description": None, "output": None, "train": ("progress",)}


@dataclass
class Recipe:
    """A whole recipe. ``name`` defaults to the YAML file's stem."""

    name: str = "recipe"
    description: str = ""
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optimizer: OptimizerSection = field(default_factory=OptimizerSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    train: TrainSection = field(default_factory=TrainSection)
    output: OutputSection = field(default_factory=OutputSection)

    @property
    def run_name(self) -> str:
        """The run directory's name: ``output.name`` or ``<recipe>-<model>``."""
        return self.output.name or f"{self.name}-{self.model.name}"

    @property
    def schedule_epochs(self) -> float:
        """The schedule's length in epochs."""
        return self.schedule.epochs if self.schedule.epochs is not None else self.train.epochs


def check_values(r: "Recipe") -> None:
    """Range checks the types cannot express (raises :class:`RecipeError`)."""
    rules = [
        (r.data.batch_size >= 1, "data.batch_size must be at least 1"),
        (r.data.validation >= 0 and (isinstance(r.data.validation, int) or r.data.validation < 1),
         "data.validation must be a count (int >= 0) or a fraction in [0, 1)"),
        (r.data.limit is None or r.data.limit >= 1, "data.limit must be at least 1"),
        (r.data.image_size is None or r.data.image_size >= 1, "data.image_size must be positive"),
        (r.optimizer.lr > 0, "optimizer.lr must be positive"),
        (0 <= r.optimizer.momentum < 1, "optimizer.momentum must be in [0, 1)"),
        (r.optimizer.weight_decay >= 0, "optimizer.weight_decay must be >= 0"),
        (not (r.optimizer.name == "adamw" and r.optimizer.weight_decay_mode == "l2"),
         "optimizer adamw is Adam with decoupled weight decay; use name: adam for L2 weight decay"),
        (r.train.epochs >= 1, "train.epochs must be at least 1"),
        (0 <= r.train.label_smoothing < 1, "train.label_smoothing must be in [0, 1)"),
        (r.train.steps_per_epoch is None or r.train.steps_per_epoch >= 1, "train.steps_per_epoch must be >= 1"),
        (r.train.steps_per_execution >= 1, "train.steps_per_execution must be >= 1"),
        (0 <= r.train.swa_start_epoch <= r.train.epochs,
         f"train.swa_start_epoch must be in [0, {r.train.epochs}] (0: no weight averaging)"),
        (r.schedule_epochs > 0, "schedule.epochs must be positive"),
        (0 <= r.schedule.warmup_epochs < r.schedule_epochs,
         f"schedule.warmup_epochs={r.schedule.warmup_epochs:g} must be in [0, {r.schedule_epochs:g}), shorter than the "
         f"schedule ({'schedule.epochs' if r.schedule.epochs else 'train.epochs'}={r.schedule_epochs:g}); pass a "
         f"shorter schedule.warmup_epochs (e.g. schedule.warmup_epochs={r.schedule_epochs / 2:g}) or more epochs"),
        (0 < r.schedule.start_factor <= 1, "schedule.start_factor must be in (0, 1]"),
        (0 <= r.schedule.final_factor <= 1, "schedule.final_factor must be in [0, 1]"),
        (r.schedule.gamma > 0, "schedule.gamma must be positive"),
        (r.schedule.cycles >= 1, "schedule.cycles must be at least 1"),
        (r.train.swa_every >= 1, "train.swa_every must be at least 1"),
        (0 <= r.train.distill_weight <= 1, "train.distill_weight must be in [0, 1]"),
        (r.train.distill_temperature > 0, "train.distill_temperature must be positive"),
        (r.train.teachers or not r.train.distill_flip,
         "train.distill_flip mirrors the teachers' views, and train.teachers names none: add teachers or drop it"),
        (list(r.schedule.milestones) == sorted(set(r.schedule.milestones)) and
         all(m > 0 for m in r.schedule.milestones), "schedule.milestones must be increasing positive epochs"),
        (r.schedule.name == "step" or not r.schedule.milestones,
         f"schedule.milestones only apply to the step schedule, not {r.schedule.name!r}"),
        (r.optimizer.bn_bias_lr_scale > 0, "optimizer.bn_bias_lr_scale must be positive"),
        (r.train.whitening_images >= 0, "train.whitening_images must be >= 0 (0: no whitening initialisation)"),
        (r.train.whitening_eps > 0, "train.whitening_eps must be positive"),
        (0 <= r.train.whitening_bias_epochs <= r.train.epochs,
         f"train.whitening_bias_epochs must be in [0, {r.train.epochs}] (0: the bias is never frozen)"),
    ]
    for ok, message in rules:
        if not ok:
            raise RecipeError(f"recipe {r.name!r}: {message}.")
