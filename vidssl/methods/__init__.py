"""Methods: one file each, registered by name."""
from vidssl.methods import crw  # noqa: F401  (registers "crw")
from vidssl.methods.base import METHODS, Method, build_method, register

__all__ = ["Method", "METHODS", "build_method", "register"]
