"""Reading data pickles without running code: an unpickler that admits only plain containers, strings, bytes,
numbers and numpy arrays, dtypes and scalars (what the TAP-Vid files hold), and refuses every other global
before it is looked up, so a pickle that would call os.system or any other function is an error, not a run.
"""
from __future__ import annotations

import io
import os
import pickle

# (module, name) pairs a data pickle may name. Anything else is refused. The numpy reconstructors are those of
# numpy 1 (numpy.core...) and numpy 2 (numpy._core...); `_frombuffer` is what protocol 5 writes for arrays,
# `_codecs.encode` what protocol <= 2 writes for bytes (it only encodes a str), `__builtin__` is Python 2's
# name of builtins (protocol <= 2 pickles name it so).
_NUMPY = {
    (f"numpy.{core}.{mod}", name)
    for core in ("core", "_core")
    for mod, name in (("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer"))
}
_BUILTINS = {(mod, name) for mod in ("builtins", "__builtin__")
             for name in ("dict", "list", "tuple", "set", "frozenset", "str", "bytes", "bytearray", "int", "float",
                          "complex", "bool")}
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    _NUMPY | _BUILTINS | {("numpy", "dtype"), ("numpy", "ndarray"), ("_codecs", "encode")}
)


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle names a global outside ALLOWED_GLOBALS."""


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, source: str):
        super().__init__(file)
        self._source = source

    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_GLOBALS:
            raise UnsafePickleError(
                f"{self._source}: refused to load {module}.{name} (only containers, strings, bytes, numbers and "
                f"numpy arrays are admitted; nothing was run)")
        if module in ("builtins", "__builtin__"):
            import builtins

            return getattr(builtins, name)
        if module == "numpy.core.multiarray" or module == "numpy.core.numeric":
            # numpy 1 names: numpy 2 keeps them as aliases of numpy._core; resolve to numpy._core when present
            module = module.replace("numpy.core", "numpy._core") if _has_numpy_private_core() else module
        elif module.startswith("numpy._core") and not _has_numpy_private_core():
            module = module.replace("numpy._core", "numpy.core")  # a numpy 2 pickle read with numpy 1
        return super().find_class(module, name)


def _has_numpy_private_core() -> bool:
    import importlib.util

    return importlib.util.find_spec("numpy._core") is not None


def safe_loads_pickle(data: bytes, source: str = "<bytes>"):
    """Unpickle `data` with only ALLOWED_GLOBALS admitted; `source` names it in errors."""
    try:
        return _RestrictedUnpickler(io.BytesIO(data), source).load()
    except UnsafePickleError:
        raise
    except Exception as e:  # truncated or corrupt: one clear error naming the file
        raise pickle.UnpicklingError(f"{source}: not a readable pickle ({type(e).__name__}: {e})") from e


def safe_load_pickle(path: str):
    """Load a data pickle without running code. Raises UnsafePickleError naming the file and the refused
    `module.name` when the pickle names anything but containers, strings, bytes, numbers or numpy arrays."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found")
    with open(path, "rb") as f:
        try:
            return _RestrictedUnpickler(f, path).load()
        except UnsafePickleError:
            raise
        except Exception as e:
            raise pickle.UnpicklingError(f"{path}: not a readable pickle ({type(e).__name__}: {e})") from e
