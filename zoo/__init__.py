"""zoo: exact All-CNN, ResNet, SqueezeNet, FishNet and VGG builders with switchable downsampling."""
from zoo.registry import build, get_entry, list_models, resolve_plan, sites

__version__ = "0.1.0"
__all__ = ["build", "get_entry", "list_models", "resolve_plan", "sites", "__version__"]
