"""Tests of the restricted unpickler: what it rebuilds, and that it never runs a checkpoint's code."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from cleftscore.errors import CheckpointError
from cleftscore.gan.safe_pickle import BoundedReader, LazyTensor, PersistentObject, RestrictedUnpickler, load_pickle


class _RunsCode:
    """Pickles as a call of ``os.system`` (what a malicious checkpoint would hold)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_global_outside_the_list_is_refused_and_never_called(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": _RunsCode(marker)}, protocol=4))
    with pytest.raises(CheckpointError, match=r"refused to load: the pickle asks for (posix|os|nt)\.system"):
        load_pickle(path)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4])
def test_plain_containers_numpy_values_and_tensors_are_rebuilt(tmp_path: Path, protocol: int) -> None:
    weight = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    obj = {"a": {1, 2}, "b": frozenset({"x"}), "c": np.float32(1.5), "t": weight, "bytes": b"\x00\xff"}
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    got = load_pickle(path)
    assert got["a"] == {1, 2} and got["b"] == frozenset({"x"}) and got["c"] == 1.5 and got["bytes"] == b"\x00\xff"
    assert isinstance(got["t"], LazyTensor) and got["t"].shape == (2, 3)
    assert torch.equal(got["t"].materialize(), weight)


def test_nvidia_persistent_objects_become_inert_records() -> None:
    # The bytes NVIDIA's persistence writes: a call of _reconstruct_persistent_obj(meta).
    meta = {"type": "class", "version": 6, "class_name": "training.networks.Generator", "state": {"k": 1},
            "module_src": "class SynthesisInput: ...\nos.system('touch /nowhere')"}  # fmt: skip
    data = (
        b"\x80\x04ctorch_utils.persistence\n_reconstruct_persistent_obj\n"
        + pickle.dumps(meta, protocol=4)[2:-1]  # the dict, without its PROTO and STOP
        + b"\x85R."
    )
    got = RestrictedUnpickler(io.BytesIO(data), source="test").load()
    assert isinstance(got, PersistentObject)
    assert (got.class_name, got.state, got.source_family) == ("Generator", {"k": 1}, "stylegan3")
    assert not hasattr(got, "module_src")  # the source text is read, not kept


def test_a_tensor_reaching_past_its_storage_is_refused(tmp_path: Path) -> None:
    t = torch.zeros(4)
    data = pickle.dumps(t, protocol=4)
    # The same pickle claiming a size of 40 elements for its 4 stored ones.
    forged = data.replace(b"K\x04\x85", b"K(\x85", 1)
    assert forged != data
    path = tmp_path / "forged.pkl"
    path.write_bytes(forged)
    with pytest.raises(CheckpointError, match="reaches past its storage"):
        load_pickle(path)


def test_bounded_reader_never_reads_past_the_declared_size() -> None:
    reader = BoundedReader(io.BytesIO(b"abcdefgh"), 5)
    assert reader.read(3) == b"abc"
    assert reader.read(1 << 40) == b"de"  # a forged length is clamped to what is left
    assert reader.read() == b""
    buf = bytearray(4)
    assert BoundedReader(io.BytesIO(b"xyz\nrest"), 2).readinto(buf) == 2 and bytes(buf[:2]) == b"xy"
    assert BoundedReader(io.BytesIO(b"xyz\nrest"), 6).readline() == b"xyz\n"
