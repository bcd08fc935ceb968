from zoo.models import allconv, resnet  # noqa: F401
