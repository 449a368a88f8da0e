"""A restricted unpickler for NVIDIA's network pickles: nothing in the file is ever executed.

A pickle is a program: ``pickle.load`` calls whatever globals the file names. The
:class:`RestrictedUnpickler` resolves a short list of globals, each to a harmless stand-in, and
refuses every other one with a :class:`~cleftscore.errors.CheckpointError`:

* NVIDIA's persisted network objects (``torch_utils.persistence``) become
  :class:`PersistentObject` records of their class name, pickled state and the architecture
  family their stored source text defines (read as text, never run);
* plain ``torch.nn`` modules, ``dnnlib.util.EasyDict`` and a few builtins become inert
  containers;
* tensors become :class:`LazyTensor` views whose geometry is checked against their storage's
  bytes before anything is copied; legacy ``torch.save`` storage blobs are parsed here, without
  ``torch.load``; numpy values are rebuilt only from plain bytes of a numeric dtype.

Reads never ask for more bytes than the file has (:class:`BoundedReader`), so a forged length
cannot allocate gigabytes. :func:`load_pickle` is the entry point;
:mod:`cleftscore.gan.checkpoints` turns its result into a generator's state dict.
"""

from __future__ import annotations

import collections
import io
import math
import pickle
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cleftscore.errors import CheckpointError

if TYPE_CHECKING:  # pragma: no cover
    from torch import Tensor

__all__ = [
    "LEGACY_TORCH_MAGIC",
    "BoundedReader",
    "LazyTensor",
    "PersistentObject",
    "RestrictedUnpickler",
    "load_pickle",
]

#: First object of a legacy (non-zip) ``torch.save`` file.
LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C


def load_pickle(path: Path) -> Any:
    """The first pickled object in ``path``, rebuilt from inert stand-ins only.

    Raises
    ------
    CheckpointError
        The pickle asks for a global outside the known list (``os.system``, ...), or its data
        does not check out.
    """
    with path.open("rb") as f:
        return RestrictedUnpickler(BoundedReader(f, path.stat().st_size), source=str(path)).load()


class PersistentObject:
    """Stand-in for a network object pickled by NVIDIA's ``torch_utils.persistence``."""

    def __init__(self, meta: Any) -> None:
        if not isinstance(meta, dict):
            raise CheckpointError(f"persistent object metadata is a {type(meta).__name__}, not a dict")
        self.kind = meta.get("type")
        self.version = meta.get("version")
        # NVIDIA records the bare class name; older tools wrote dotted paths: keep the last part.
        self.class_name = str(meta.get("class_name")).rsplit(".", 1)[-1]
        self.state = meta.get("state") or {}
        # meta["module_src"] is NVIDIA's source text: read as text to name the architecture,
        # never executed, and not kept.
        self.source_family = _source_family(meta.get("module_src"))

    def __setstate__(self, state: Any) -> None:  # a BUILD opcode after the reconstruct call
        if isinstance(state, dict):
            self.state = {**self.state, **state}


def _source_family(src: Any) -> str | None:
    """Name the network family a persisted class's ``module_src`` text defines (None: no text)."""
    if not isinstance(src, str):
        return None
    if "class SynthesisInput" in src or "filtered_lrelu" in src:
        return "stylegan3"
    if "class SynthesisBlock" in src and "class MappingNetwork" in src and "def modulated_conv2d" in src:
        return "stylegan2"
    if "class AugmentPipe" in src:
        return "augment"
    return "unknown"


class _PlainObject:
    """Inert stand-in for a plain ``torch.nn`` module (only its ``__dict__`` is kept)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slots)
            state = state[0] or {}
        if isinstance(state, dict):
            self.state = dict(state)


def _make_plain_class(qualname: str) -> type:
    return type(qualname.rsplit(".", 1)[-1], (_PlainObject,), {"class_name": qualname})


class _EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict``: a dict that also accepts a BUILD of its attributes."""


class _StorageType:
    """Marker for a typed storage class such as ``torch.FloatStorage``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.dtype, self.itemsize = _STORAGE_TYPES[name]


# Typed storage classes of legacy ``torch.save`` blobs: torch dtype name and bytes per element.
# Names, not torch objects, so a file can be refused before torch is imported.
_STORAGE_TYPES: dict[str, tuple[str, int]] = {
    "FloatStorage": ("float32", 4),
    "HalfStorage": ("float16", 2),
    "DoubleStorage": ("float64", 8),
    "BFloat16Storage": ("bfloat16", 2),
    "LongStorage": ("int64", 8),
    "IntStorage": ("int32", 4),
    "ShortStorage": ("int16", 2),
    "CharStorage": ("int8", 1),
    "ByteStorage": ("uint8", 1),
    "BoolStorage": ("bool", 1),
}


class _LazyStorage:
    """The raw bytes of one storage; a torch tensor is made only once the whole file checks out."""

    def __init__(self, dtype: str, raw: bytes) -> None:
        self.dtype, self.raw = dtype, raw
        self.numel = len(raw) // _STORAGE_TYPES_BY_DTYPE[dtype]
        self._tensor: Tensor | None = None

    def tensor(self) -> Tensor:
        import torch

        if self._tensor is None:
            dtype = getattr(torch, self.dtype)
            self._tensor = (
                torch.frombuffer(bytearray(self.raw), dtype=dtype) if self.raw else torch.empty(0, dtype=dtype)
            )
            self.raw = b""
        return self._tensor


_STORAGE_TYPES_BY_DTYPE = dict(_STORAGE_TYPES.values())


class LazyTensor:
    """A checked view (offset, size, stride) into a :class:`_LazyStorage`."""

    def __init__(self, storage: _LazyStorage, offset: int, size: tuple[int, ...], stride: tuple[int, ...]) -> None:
        self.storage, self.offset, self.shape, self.stride = storage, offset, size, stride

    def materialize(self) -> Tensor:
        import torch

        return torch.as_strided(self.storage.tensor(), self.shape, self.stride, self.offset)


def _rebuild_tensor(storage: Any, storage_offset: int, size: Any, stride: Any, *_rest: Any) -> LazyTensor:
    if not isinstance(storage, _LazyStorage):
        raise CheckpointError("tensor data is not a storage")
    size, stride, off = tuple(int(s) for s in size), tuple(int(s) for s in stride), int(storage_offset)
    if len(size) != len(stride) or off < 0 or any(s < 0 for s in size) or any(s < 0 for s in stride):
        raise CheckpointError(f"bad tensor geometry (size {size}, stride {stride}, offset {off})")
    if all(s > 0 for s in size):
        last = off + sum((s - 1) * st for s, st in zip(size, stride, strict=False))
        if last >= storage.numel:
            raise CheckpointError(f"tensor of size {size} reaches past its storage of {storage.numel} elements")
        # Overlapping strides (a zero stride, say) would let a few stored bytes expand into a
        # huge tensor once copied: every element must have its own place in the storage.
        need = 1
        for st, s in sorted((st, s) for s, st in zip(size, stride, strict=False) if s > 1):
            if st < need:
                raise CheckpointError(f"tensor of size {size} has overlapping strides {stride}")
            need = st * s
    return LazyTensor(storage, off, size, stride)


def _rebuild_parameter(data: Any, *_rest: Any) -> Any:
    return data


def _latin1_bytes(text: Any, encoding: Any = "utf-8") -> bytes:
    if not isinstance(text, str) or encoding != "latin1":
        raise CheckpointError("refused a _codecs.encode call that does not rebuild bytes")
    return text.encode("latin1")


def _clean_dtype(dtype: Any) -> np.dtype:
    """A fresh dtype rebuilt from ``dtype``'s type string, refused if it holds objects.

    A pickle can BUILD a dtype after creating it and rewrite its flags; only a dtype made anew
    from its string is trusted to describe plain numbers.
    """
    if not isinstance(dtype, np.dtype):
        raise CheckpointError("refused a numpy value without a numpy dtype")
    clean = np.dtype(dtype.str)
    if clean.hasobject or dtype.hasobject or clean.kind not in "biufc" or clean.itemsize != dtype.itemsize:
        raise CheckpointError("refused a numpy value of object or non-numeric type")
    return clean


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    clean = _clean_dtype(dtype)
    if not isinstance(data, bytes) or len(data) != clean.itemsize:
        raise CheckpointError("refused a numpy scalar whose data does not fit its type")
    value = np.frombuffer(data, dtype=clean, count=1)
    if value.dtype.hasobject:  # the dtype actually produced, not only the one asked for
        raise CheckpointError("refused a numpy scalar of object type")
    return value[0].item()


class _NumpyArray:
    """Stand-in for a pickled ``numpy.ndarray``: built only from plain bytes of a numeric dtype."""

    def __init__(self, shape: Any) -> None:
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) == 5):
            raise CheckpointError("refused a numpy array with an unexpected pickled state")
        _version, shape, dtype, is_fortran, raw = state
        clean = _clean_dtype(dtype)
        shape = tuple(int(n) for n in shape)
        if any(n < 0 for n in shape) or not isinstance(raw, (bytes, bytearray)):
            raise CheckpointError("refused a numpy array whose data is not plain bytes")
        if math.prod(shape) * clean.itemsize != len(raw):
            raise CheckpointError(f"numpy array of shape {shape} does not match its {len(raw)} bytes")
        arr = np.frombuffer(bytes(raw), dtype=clean).reshape(shape, order="F" if is_fortran else "C")
        if arr.dtype.hasobject:
            raise CheckpointError("refused a numpy array of object type")
        self.array = arr


def _numpy_reconstruct(subtype: Any, shape: Any, dtype: Any) -> _NumpyArray:
    if subtype is not np.ndarray:
        raise CheckpointError("refused a numpy array subclass")
    _clean_dtype(np.dtype(dtype) if isinstance(dtype, (str, bytes)) else dtype)
    return _NumpyArray(shape)


def _numpy_dtype(obj: Any, align: Any = False, copy: Any = False) -> np.dtype:
    if not isinstance(obj, str):
        raise CheckpointError("refused a numpy dtype that is not named by a string")
    dt = np.dtype(obj)
    if dt.hasobject:
        raise CheckpointError("refused a numpy object dtype")
    return dt


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only known, inert globals; everything else is a :class:`CheckpointError`."""

    def __init__(self, file: Any, *, source: str) -> None:
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        full = f"{module}.{name}"
        safe = _SAFE_GLOBALS.get(full)
        if safe is not None:
            return safe()
        if module == "torch" and name in _STORAGE_TYPES:
            return _StorageType(name)
        if module.startswith("torch.nn.modules.") and name[:1].isupper() and name.isidentifier():
            return _make_plain_class(full)
        if module.startswith("dnnlib.tflib"):
            raise CheckpointError(
                f"{self.source}: a TensorFlow StyleGAN2 pickle ({full}); use the PyTorch ffhq.pkl of "
                "stylegan2-ada-pytorch instead"
            )
        raise CheckpointError(f"{self.source}: refused to load: the pickle asks for {full}, which is not allowed")

    def persistent_load(self, pid: Any) -> Any:
        raise CheckpointError(f"{self.source}: unexpected persistent id in a network pickle")


def _load_from_bytes_factory() -> Any:
    return _StorageBlobReader.read


_SAFE_GLOBALS: dict[str, Any] = {
    "torch_utils.persistence._reconstruct_persistent_obj": lambda: PersistentObject,
    "dnnlib.util.EasyDict": lambda: _EasyDict,
    "collections.OrderedDict": lambda: collections.OrderedDict,
    "builtins.set": lambda: set,
    "builtins.frozenset": lambda: frozenset,
    # Protocol 2 writes Python 2 names, and bytes as _codecs.encode(text, "latin1").
    "__builtin__.set": lambda: set,
    "__builtin__.frozenset": lambda: frozenset,
    "_codecs.encode": lambda: _latin1_bytes,
    "torch._utils._rebuild_tensor_v2": lambda: _rebuild_tensor,
    "torch._utils._rebuild_tensor": lambda: _rebuild_tensor,
    "torch._utils._rebuild_parameter": lambda: _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": lambda: _rebuild_parameter,
    "torch.storage._load_from_bytes": _load_from_bytes_factory,
    "torch.Size": lambda: tuple,
    "numpy.core.multiarray.scalar": lambda: _numpy_scalar,
    "numpy._core.multiarray.scalar": lambda: _numpy_scalar,
    "numpy.core.multiarray._reconstruct": lambda: _numpy_reconstruct,
    "numpy._core.multiarray._reconstruct": lambda: _numpy_reconstruct,
    "numpy.ndarray": lambda: np.ndarray,
    "numpy.dtype": lambda: _numpy_dtype,
}


class _PendingStorage:
    def __init__(self, key: str, stype: _StorageType, numel: int, view: Any) -> None:
        self.key, self.dtype, self.itemsize, self.numel, self.view = key, stype.dtype, stype.itemsize, numel, view


class _BlobUnpickler(RestrictedUnpickler):
    """Unpickler for the pickles inside a legacy ``torch.save`` blob: only typed storages."""

    def __init__(self, file: Any, *, source: str) -> None:
        super().__init__(file, source=source)
        self.pending: dict[str, _PendingStorage] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in _STORAGE_TYPES:
            return _StorageType(name)
        raise CheckpointError(f"{self.source}: refused to load: a storage blob asks for {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise CheckpointError(f"{self.source}: unknown persistent id in a storage blob")
        stype, key, _location, numel = pid[1], str(pid[2]), pid[3], int(pid[4])
        view = pid[5] if len(pid) > 5 else None
        if not isinstance(stype, _StorageType):
            raise CheckpointError(f"{self.source}: storage of unknown type {stype!r}")
        pending = self.pending.get(key) or _PendingStorage(key, stype, numel, None)
        self.pending[key] = pending
        return _PendingStorage(key, stype, numel, view) if view is not None else pending


class _StorageBlobReader:
    """Parse one legacy (non-zip) ``torch.save(storage)`` blob without ``torch.load``."""

    @staticmethod
    def read(blob: Any) -> _LazyStorage:
        if not isinstance(blob, (bytes, bytearray)):
            raise CheckpointError("storage blob is not bytes")
        f = io.BytesIO(blob)
        src = "storage blob"
        magic = _BlobUnpickler(f, source=src).load()
        if magic != LEGACY_TORCH_MAGIC:
            raise CheckpointError("storage blob has a wrong magic number")
        _protocol = _BlobUnpickler(f, source=src).load()
        sys_info = _BlobUnpickler(f, source=src).load()
        if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
            raise CheckpointError("big-endian storage blobs are not supported")
        up = _BlobUnpickler(f, source=src)
        result = up.load()
        keys = _BlobUnpickler(f, source=src).load()
        if not isinstance(keys, list):
            raise CheckpointError("storage blob has no key list")
        raws: dict[str, bytes] = {}
        for key in keys:
            pending = up.pending.get(str(key))
            if pending is None:
                raise CheckpointError("storage blob lists an unknown storage")
            head = f.read(8)
            if len(head) != 8:
                raise CheckpointError("storage blob is truncated")
            (count,) = struct.unpack("<q", head)
            itemsize = pending.itemsize
            if count != pending.numel or count < 0:
                raise CheckpointError("storage blob size does not match its header")
            raw = f.read(count * itemsize)
            if len(raw) != count * itemsize:
                raise CheckpointError("storage blob is truncated")
            raws[pending.key] = raw
        if not isinstance(result, _PendingStorage) or result.key not in raws:
            raise CheckpointError("storage blob does not hold a storage")
        raw = raws[result.key]
        if result.view is not None:
            _vkey, off, size = result.view[:3]
            raw = raw[int(off) * result.itemsize : (int(off) + int(size)) * result.itemsize]
        return _LazyStorage(result.dtype, raw)


class BoundedReader:
    """A binary file whose reads never ask for more than what is left of it.

    A pickle's length fields (``BINBYTES8`` and the like) are the file's word; clamping each
    read to the bytes that exist keeps a forged length from allocating gigabytes.
    """

    def __init__(self, f: Any, size: int) -> None:
        self._f, self._left = f, size

    def read(self, n: int = -1) -> bytes:
        n = self._left if n is None or n < 0 else min(n, self._left)
        data = self._f.read(n)
        self._left -= len(data)
        return data

    def readinto(self, buf: Any) -> int:
        view = memoryview(buf).cast("B")
        n = self._f.readinto(view[: min(len(view), self._left)])
        self._left -= n
        return n

    def readline(self, limit: int = -1) -> bytes:
        limit = self._left if limit is None or limit < 0 else min(limit, self._left)
        data = self._f.readline(limit)
        self._left -= len(data)
        return data
