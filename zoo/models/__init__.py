"""The model registry and the families it holds: importing this package registers every family.

Each family module (``airbench``, ``allconv``, ``resnet``, ``squeezenet``, ``fishnet``, ``vgg``) registers its
variants with :func:`zoo.models.registry.register_model` from a table of published facts; the
registry never imports the families (no cycle), this package does.
"""
from zoo.models import airbench, allconv, fishnet, resnet, squeezenet, vgg  # noqa: F401  (registers the families)
from zoo.models.registry import build, get_entry, list_models, register_model, resolve_plan, sites

__all__ = ["build", "get_entry", "list_models", "register_model", "resolve_plan", "sites"]
