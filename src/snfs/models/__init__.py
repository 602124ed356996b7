"""Model builders, one readable function per architecture, behind one registry.

A builder takes ``num_classes`` (and its own keyword options) and returns an ``nn.Module``.
Importing this package registers every builder.
"""

from snfs.registry import Registry

MODELS: Registry = Registry("model.name")

from snfs.models import alexnet, lenet, mlp, resnet, vgg, wrn  # noqa: E402,F401  (registers builders)


def build_model(name: str, num_classes: int, **kwargs):
    return MODELS.get(name)(num_classes=num_classes, **kwargs)
