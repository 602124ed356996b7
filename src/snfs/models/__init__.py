"""Model builders, one readable function per architecture, behind one registry.

A builder takes ``num_classes`` (and its own keyword options) and returns an ``nn.Module``.
Importing this package registers every builder: each module in this folder is imported, so a new
architecture is one module here plus its conf/model/<name>.yaml.
"""

import importlib
import pkgutil

from snfs.registry import Registry

MODELS: Registry = Registry("model.name")

for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_info.name}")


def build_model(name: str, num_classes: int, **kwargs):
    return MODELS.get(name)(num_classes=num_classes, **kwargs)
