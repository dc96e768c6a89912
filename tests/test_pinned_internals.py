"""Every private attribute of a dependency that the product relies on, in one place.

Each is used where no public way exists, with a comment at the use naming this file; a change of
the pinned versions (Python 3.11, tensorflow-datasets 4.9.4) that moves one fails here, by name.
"""

from __future__ import annotations

import io
import pickle
import zipfile

import pytest


def test_zip_members_know_their_uncompressed_size():
    """`legacy_pickle.stream_size`: `ZipExtFile._orig_file_size`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a", b"x" * 1000)
    with zipfile.ZipFile(buffer) as archive, archive.open("a") as member:
        assert member._orig_file_size == 1000


def test_the_python_pickler_writes_list_items_one_at_a_time():
    """`export.ListPickleWriter`: `pickle._Pickler` with `fast`, `write`, `save` and `framer`."""
    out = io.BytesIO()
    pickler = pickle._Pickler(out, 5)
    pickler.fast = True
    pickler.write(pickle.PROTO + bytes([5]))
    pickler.framer.start_framing()
    pickler.write(pickle.EMPTY_LIST + pickle.MARK)
    pickler.save(1)
    pickler.framer.commit_frame()
    pickler.write(pickle.APPENDS + pickle.STOP)
    pickler.framer.end_framing()
    assert pickle.loads(out.getvalue()) == [1]


def test_tfds_write_buffer_and_incomplete_dir_are_where_the_builder_sets_them():
    """`builder._bounded_write_buffer` and `builder._durable_incomplete_dir` (tensorflow-datasets 4.9.4)."""
    from tensorflow_datasets.core import shuffle, utils

    assert isinstance(shuffle.MAX_MEM_BUFFER_SIZE, int)
    assert callable(utils.incomplete_dir)


@pytest.mark.parametrize("name", ["DatasetIdentity", "ShardedFileTemplate", "SplitDict", "SplitInfo"])
def test_the_recording_store_uses_public_tfds_names(name):
    import tensorflow_datasets as tfds

    assert hasattr(tfds.core, name)


def test_tfds_tensors_expose_what_column_encoding_checks():
    """`builder._columns`: `Tensor._dynamic_shape`, `_serialized_dtype`, `_serialized_shape`, `_encoding`,
    and `Dataset.encode_example` looked up on the instance (so an instance attribute can stand in)."""
    import numpy as np
    import tensorflow_datasets as tfds

    action = tfds.features.Tensor(shape=(3,), dtype=np.float64, encoding=tfds.features.Encoding.BYTES)
    assert action._dynamic_shape is False and action._serialized_dtype == np.float64
    assert tuple(action._serialized_shape) == (3,) and action._encoding == tfds.features.Encoding.BYTES
    features = tfds.features.FeaturesDict({"steps": tfds.features.Dataset({"a": tfds.features.Scalar(np.int8)})})
    features["steps"].encode_example = lambda value: {"a": ["stand-in"]}
    assert features.encode_example({"steps": {"a": np.zeros(2, np.int8)}}) == {"steps": {"a": ["stand-in"]}}


def test_torch_makes_a_shared_storage_whose_pages_come_when_written():
    """`batch_ring.shared_tensor`: `Tensor._typed_storage()._new_shared(n, device=)`, as torch's own
    `default_collate` allocates its batches in DataLoader workers."""
    import torch

    storage = torch.empty(0, dtype=torch.float32)._typed_storage()._new_shared(6, device="cpu")
    tensor = torch.empty(0, dtype=torch.float32).new(storage).resize_(2, 3)
    tensor.fill_(1.5)
    assert tensor.is_shared() and tensor.shape == (2, 3) and float(tensor.sum()) == 9.0


def test_a_script_leaving_a_dataset_alive_exits_without_tensorflows_finaliser_errors(tmp_path):
    """`builder._quiet_interpreter_exit`: `AtomicFunction.__del__` (TensorFlow 2.15) and its module's
    `RUNTIME_FUNCTION_REFS`. The README's snippet, which keeps `ds` in the script's globals, once printed two
    "Exception ignored ... TypeError" tracebacks at exit; a finaliser error outside exit still raises."""
    import subprocess
    import sys

    import factory

    from tensorflow.python.eager.polymorphic_function import atomic_function

    assert isinstance(atomic_function.RUNTIME_FUNCTION_REFS, dict) and callable(atomic_function.AtomicFunction.__del__)
    factory.build("dropj_carracing/real", factory.dummy_data("dropj_carracing"), tmp_path)
    script = ("import dropj_datasets\nimport tensorflow_datasets as tfds\n"
              f"ds = tfds.load('dropj_carracing', data_dir={str(tmp_path)!r}, split='train')\n"
              "for episode in ds.take(1):\n    for step in episode['steps'].take(3):\n"
              "        print(step['observation'].shape, step['action'].numpy(), step['reward'].numpy())\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 0 and done.stdout.count("(84, 84, 3)") == 3, done.stderr[-2000:]
    assert "Exception ignored" not in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]

    from dropj_datasets import builder

    builder._quiet_interpreter_exit()  # what exit runs: the finaliser made quiet while finalizing only
    assert atomic_function.AtomicFunction.__del__.dropj_quiet_exit

    class Broken:  # a key that cannot be looked up: the TypeError the finaliser raises at exit, raised now
        _generated_graph = None
        _bound_context = type("Context", (), {"function_scope_id": []})()
        name = "x"

    with pytest.raises(TypeError, match="unhashable"):
        atomic_function.AtomicFunction.__del__(Broken())
