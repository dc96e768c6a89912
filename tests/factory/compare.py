"""Comparing what the TF-free reader (`EpisodeSource`) gives with what `tfds.load` gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def assert_reads_like_tfds(directory: Path) -> int:
    """Every example of a built directory, through `EpisodeSource` and through TFDS, equal value for value
    (types, dtypes, shapes); returns how many."""
    from dropj.loaders import EpisodeSource

    source = EpisodeSource(directory)
    theirs = tfds_examples(directory)
    assert len(source) == len(theirs) > 0
    for i, example in enumerate(theirs):
        assert_same(source[i], example, f"{directory.name}[{i}]")
    return len(theirs)


def tfds_examples(directory: Path) -> list:
    import tensorflow_datasets as tfds

    import dropj_datasets  # noqa: F401

    builder = tfds.builder_from_directory(str(directory))
    return list(tfds.as_numpy(builder.as_dataset(split="train")))


def assert_same(ours, theirs, path: str = "") -> None:
    """Our value against tfds.as_numpy's: nested datasets come from TFDS as iterables of steps."""
    if isinstance(ours, dict) and not isinstance(theirs, dict):  # a nested tf.data of steps
        steps = list(theirs)
        assert len(steps) == len(next(iter(_leaves(ours)))), path
        for key, value in ours.items():
            assert_same(value, _stacked([step[key] for step in steps]), f"{path}/{key}")
        return
    if isinstance(ours, dict):
        assert set(ours) == set(theirs), path
        for key in ours:
            assert_same(ours[key], theirs[key], f"{path}/{key}")
        return
    if isinstance(theirs, bytes):
        assert type(ours) is bytes and ours == theirs, path
        return
    assert type(ours) is type(theirs), (path, type(ours), type(theirs))
    theirs, ours = np.asarray(theirs), np.asarray(ours)
    assert ours.shape == theirs.shape, (path, ours.shape, theirs.shape)
    if theirs.dtype == object:
        assert ours.dtype == object and ours.tolist() == theirs.tolist(), path
    else:
        assert ours.dtype == theirs.dtype, (path, ours.dtype, theirs.dtype)
        assert np.array_equal(ours, theirs, equal_nan=ours.dtype.kind == "f"), path


def _stacked(values: list):
    if values and isinstance(values[0], dict):
        return {key: _stacked([v[key] for v in values]) for key in values[0]}
    return np.stack(values) if values else np.zeros(0)


def _leaves(tree):
    for value in tree.values():
        if isinstance(value, dict):
            yield from _leaves(value)
        else:
            yield value
