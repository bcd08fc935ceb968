"""The options every zoo builder takes, and the type check that validates option values before Keras runs.

:class:`CommonOptions` are the ``keras.applications``-style options; a family adds its own as
keyword-only parameters of its trunk function. :func:`matches` checks a value against the type hint
of either, so that ``build("resnet20", num_classes="10")`` is refused with the expected type.
"""
from __future__ import annotations

import inspect
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Sequence


@dataclass
class CommonOptions:
    """Options every builder takes, as in ``keras.applications``.

    ``classifier_activation`` defaults to ``None``: the model returns logits (use
    ``"softmax"`` for probabilities). ``dropout`` of ``None`` keeps the paper's dropout.
    ``features_only`` returns the stage feature maps (``out_indices`` picks stages) instead of a
    classifier, as timm does; ``output_stride`` trades later downsampling for dilation.
    """

    num_classes: int = 1000
    input_shape: tuple | None = None
    include_top: bool = True
    pooling: Literal["avg", "max"] | None = None
    classifier_activation: str | None = None
    dropout: float | None = None
    downsample: str | Mapping | None = None
    output_stride: int | None = None
    features_only: bool = False
    out_indices: Sequence[int] | None = None
    name: str | None = None


def type_name(annotation: Any) -> str:
    """A type hint as an error message shows it (``int``, ``str | None``)."""
    text = str(annotation).replace("typing.", "").replace("collections.abc.", "")
    return getattr(annotation, "__name__", text) if not typing.get_args(annotation) else text


def matches(value: Any, annotation: Any) -> bool:
    """Whether ``value`` fits the type hint ``annotation`` (unions, literals, sequences, mappings; a bool is
    no int)."""
    if annotation is Any or annotation is inspect.Parameter.empty:
        return True
    if annotation is None or annotation is type(None):
        return value is None
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, a) for a in args)
    if origin is Literal:
        return value in args
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (tuple, Sequence, list) or annotation in (tuple, list):
        if not isinstance(value, (tuple, list)):
            return False
        inner = [a for a in args if a is not Ellipsis]
        if len(inner) > 1:  # fixed-length tuple[a, b, c]
            return len(value) == len(inner) and all(matches(v, a) for v, a in zip(value, inner))
        return all(matches(v, inner[0]) for v in value) if inner else True
    if origin in (Mapping, dict) or annotation in (Mapping, dict):
        return isinstance(value, Mapping)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True
