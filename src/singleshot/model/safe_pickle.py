"""A restricted unpickler for PyTorch checkpoints, passed to ``torch.load(pickle_module=...)``.

It rebuilds tensors, parameters and plain containers, and turns every other class the file names
(the MLPerf ``models.ssd_r34.SSD_R34``, torch ``nn`` modules, an anchor encoder...) into an inert
:class:`Stub` that only records its pickled state. Nothing named in the file is imported or called:
a stub that the pickle tries to *call* (``__reduce__`` tricks such as ``os.system``) is refused
with :class:`RefusedPickle`. Written by hand because torch's ``weights_only`` loader refuses the
whole-module ``.pytorch`` checkpoint outright and ``pickle`` has no safe mode.
"""

from __future__ import annotations

import _compat_pickle
import collections
import pickle
from typing import Any

import torch


class RefusedPickle(pickle.UnpicklingError):
    """The file asked for something a checkpoint never needs (it may be malicious)."""


def _allowed() -> dict[tuple[str, str], Any]:
    import torch._utils as tu

    allowed: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "slice"): slice,
        ("builtins", "object"): object,  # copyreg._reconstructor's base argument
        ("torch", "Size"): torch.Size,
        ("torch", "device"): torch.device,
        ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
        ("torch", "Tensor"): torch.Tensor,
        ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
        ("copyreg", "_reconstructor"): _reconstructor,
    }
    for fn in ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
               "_rebuild_parameter_with_state", "_rebuild_device_tensor_from_numpy"):
        if hasattr(tu, fn):
            allowed[("torch._utils", fn)] = getattr(tu, fn)
    for dt in ("float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8",
               "uint8", "bool"):
        allowed[("torch", dt)] = getattr(torch, dt)
    try:
        import numpy as np

        for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
            allowed[(mod, "_reconstruct")] = np.core.multiarray._reconstruct
            allowed[(mod, "scalar")] = np.core.multiarray.scalar
        allowed[("numpy", "ndarray")] = np.ndarray
        allowed[("numpy", "dtype")] = np.dtype
    except (ImportError, AttributeError):  # pragma: no cover - numpy is always installed
        pass
    return allowed


# Modules whose names alone mean the file is trying to run code: refused on sight.
_DANGEROUS = ("os", "posix", "nt", "sys", "subprocess", "builtins", "__builtin__", "shutil",
              "importlib", "runpy", "socket", "pickle", "_pickle", "marshal", "types", "code",
              "codeop", "ctypes", "pty", "signal", "threading", "multiprocessing", "webbrowser",
              "functools", "operator", "io", "pathlib", "tempfile", "torch.hub", "torch._C",
              "torch.jit", "torch.ops", "torch.package", "torch.serialization")


class _StubMeta(type):
    def __call__(cls, *args, **kwargs):
        raise RefusedPickle(
            f"refused: the file tries to call {cls.__qualname__} while loading, which a checkpoint "
            "never needs (the file may be malicious)"
        )


class Stub(metaclass=_StubMeta):
    """Stand-in for a class the checkpoint names: keeps the pickled state, runs no code."""

    __stub_module__ = ""

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __setstate__(self, state: Any) -> None:
        object.__setattr__(self, "_stub_state", state)

    @property
    def state(self) -> Any:
        return self.__dict__.get("_stub_state")

    def __repr__(self) -> str:
        return f"<stub {self.__stub_module__}.{type(self).__qualname__}>"


_STUB_CACHE: dict[tuple[str, str], type] = {}


def _stub_class(module: str, name: str) -> type:
    key = (module, name)
    if key not in _STUB_CACHE:
        _STUB_CACHE[key] = _StubMeta(name, (Stub,), {"__stub_module__": module,
                                                     "__qualname__": f"{module}.{name}"})
    return _STUB_CACHE[key]


def _reconstructor(cls, base, state):
    """copyreg's protocol-0/1 object rebuild, for stub classes only."""
    if isinstance(cls, type) and issubclass(cls, Stub) and base is object and state is None:
        return cls.__new__(cls)
    if cls is collections.OrderedDict:
        return collections.OrderedDict()
    raise RefusedPickle(f"refused: the file rebuilds {cls!r} in a way a checkpoint never does")


def _rebuild_from_type_v2(func, new_type, args, state):
    if new_type not in (torch.Tensor, torch.nn.Parameter):
        raise RefusedPickle(f"refused: tensor subclass {new_type!r} in the checkpoint")
    from torch._tensor import _rebuild_from_type_v2 as rebuild

    return rebuild(func, new_type, args, state)


class Unpickler(pickle.Unpickler):
    _allowed_cache: dict | None = None

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 names in protocol-0..2 pickles (__builtin__.set, copy_reg...), as pickle maps them.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        if Unpickler._allowed_cache is None:
            Unpickler._allowed_cache = _allowed()
        hit = Unpickler._allowed_cache.get((module, name))
        if hit is not None:
            return hit
        root = module.split(".")[0]
        if module in _DANGEROUS or root in _DANGEROUS:
            raise RefusedPickle(
                f"refused: the file references {module}.{name}, which a checkpoint never needs "
                "(the file may be malicious)"
            )
        return _stub_class(module, name)


def load(file, **kwargs) -> Any:
    """``pickle.load`` with :class:`Unpickler` (torch reads the legacy format's headers with it)."""
    return Unpickler(file, **kwargs).load()


def loads(data: bytes, **kwargs) -> Any:
    import io

    return load(io.BytesIO(data), **kwargs)

