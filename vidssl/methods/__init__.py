"""Methods: one file each, registered by name with @register. Every module of this package is imported here,
so a new method is a new file (plus its YAML) and nothing else."""
import importlib
import pkgutil

from vidssl.methods.base import METHODS, Method, build_method, register

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["Method", "METHODS", "build_method", "register"]
