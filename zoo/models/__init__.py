from zoo.models import allconv, fishnet, resnet, squeezenet, vgg  # noqa: F401
