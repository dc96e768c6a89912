"""`dropj make-queries`: new preference queries in the release's format, from dream or encoded episodes."""

from __future__ import annotations

import errno
import json
import pickle
import re
import shlex
import subprocess

import numpy as np
import pytest
import torch

import factory
from dropj.converters.store import durable
from dropj.converters.feedback import make_queries
from dropj_datasets.app import models_io
from dropj.converters.roundtrip.built import BuiltDataset
from dropj.converters.roundtrip.verify import verify
from dropj.loaders import video
from dropj.models import ConvVAE, save_checkpoint
from dropj_datasets import schema
from dropj_datasets.schema import DataError


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    factory.build("dropj_carracing/dream", factory.dummy_data("dropj_carracing"), data)
    torch.manual_seed(0)
    save_checkpoint(ConvVAE.for_env(schema.CARRACING), None, data / "vae.pt")
    return data


def _all_windows(data) -> list[np.ndarray]:
    source = BuiltDataset.open("dropj_carracing/dream", str(data))
    windows = []
    for example in source.examples():
        rows = make_queries._rows(example, source.spec)
        windows += [rows[k:k + 20] for k in range(len(rows) - 19)]
    return windows


@pytest.mark.slow
def test_queries_have_the_release_format_and_come_from_the_source(built, tmp_path):
    folder = models_io.make_queries("dropj_carracing/dream", str(built / "vae.pt"), 4, tmp_path, data_dir=str(built),
                                       seed=3, log=lambda line: None)
    assert folder == tmp_path / "queries_s20"
    data = pickle.loads((folder / "data.pkl").read_bytes())
    assert (folder / "data.pkl").read_bytes()[:2] == b"\x80\x04"
    assert list(data) == ["0.mp4", "1.mp4", "2.mp4", "3.mp4"]
    windows = _all_windows(built)
    for entry in data.values():
        assert set(entry) == {"segment1", "segment2"}
        for segment in entry.values():
            assert segment.shape == (20, 547) and segment.dtype == np.float64
            assert any(np.array_equal(segment, w) for w in windows)  # a real window of one episode
            assert np.all(np.abs(segment[:, 544:]) <= 1.0)  # scaled actions
    for key in data:
        assert video.info((folder / key).read_bytes()) == {
            "codec": "h264", "profile": "High", "pix_fmt": "yuv420p", "width": 1000, "height": 500, "fps": 2.5,
            "frames": 20, "duration": 8.0}


def test_rows_keep_the_dream_step0_float64_state(built):
    source = BuiltDataset.open("dropj_carracing/dream", str(built))
    example = next(iter(source.examples()))
    rows = make_queries._rows(example, source.spec)
    assert np.array_equal(rows[0, :544], example[schema.EPISODE_METADATA][schema.INITIAL_STATE])
    assert np.array_equal(rows[1:, :544], example[schema.STEPS][schema.OBSERVATION][1:-1].astype(np.float64))


@pytest.mark.slow
def test_the_same_seed_gives_the_same_queries_and_batches_merge_without_overwriting(built, tmp_path):
    args = ("dropj_carracing/dream", str(built / "vae.pt"), 3)
    first = models_io.make_queries(*args, tmp_path / "a", data_dir=str(built), seed=5, log=lambda line: None)
    again = models_io.make_queries(*args, tmp_path / "b", data_dir=str(built), seed=5, log=lambda line: None)
    assert (first / "data.pkl").read_bytes() == (again / "data.pkl").read_bytes()
    assert (first / "1.mp4").read_bytes() == (again / "1.mp4").read_bytes()
    with pytest.raises(DataError, match="holds 3 queries already; pass --start_index"):
        models_io.make_queries(*args, tmp_path / "a", data_dir=str(built), seed=6, log=lambda line: None)
    with pytest.raises(DataError,
                       match=r"2.mp4 exist already; a query is never overwritten \(choose --start_index 3\)"):
        models_io.make_queries(*args, tmp_path / "a", data_dir=str(built), seed=6, start_index=2,
                                  log=lambda line: None)
    before = pickle.loads((first / "data.pkl").read_bytes())
    models_io.make_queries(*args, tmp_path / "a", data_dir=str(built), seed=6, start_index=3, log=lambda line: None)
    merged = pickle.loads((first / "data.pkl").read_bytes())
    assert list(merged) == [f"{i}.mp4" for i in range(6)]
    assert all(np.array_equal(merged[k]["segment1"], before[k]["segment1"]) for k in before)


@pytest.mark.slow
def test_the_queries_config_builds_from_the_output_and_verifies(built, tmp_path):
    models_io.make_queries("dropj_carracing/dream", str(built / "vae.pt"), 3, tmp_path / "Q", data_dir=str(built),
                              seed=1, log=lambda line: None)
    factory.build("dropj_carracing/queries", tmp_path / "Q", tmp_path / "d")
    reports = verify("dropj_carracing/queries", tmp_path / "Q", data_dir=str(tmp_path / "d"), log=lambda line: None)
    assert reports and all(r.ok for r in reports)


def test_frames_are_refused(tmp_path):
    data = tmp_path / "d"
    factory.build("dropj_carracing/dros", factory.dummy_data("dropj_carracing"), data)
    with pytest.raises(DataError, match="queries are cut from latent episodes"):
        models_io.make_queries("dropj_carracing/dros", "x.pt", 1, tmp_path / "Q", data_dir=str(data),
                                  log=lambda line: None)


def _decoder(fail_after=None):
    """`make_decoder` with a cheap decoder (grey frames from a clip's first value) that fails after
    `fail_after` clips (a full disk, say)."""
    calls = []

    def make(env):
        def decode(rows):
            calls.append(1)
            if fail_after is not None and len(calls) > fail_after:
                raise OSError(errno.ENOSPC, "No space left on device")
            return np.full((20, 64, 64, 3), int(abs(rows[0, 0]) * 1000) % 256, np.uint8)
        return decode
    return make


def _flags_exist(message: str) -> None:
    """Every --flag a message names is one of `dropj make-queries`' own."""
    from dropj_datasets.app.cli import parser

    [command] = [a for a in parser()._subparsers._group_actions[0].choices.items() if a[0] == "make-queries"]
    known = {s for action in command[1]._actions for s in action.option_strings}
    assert set(re.findall(r"--\w+", message)) <= known, message


def test_an_interrupted_make_queries_is_marked_and_the_same_command_finishes_it(built, tmp_path):
    """A failed run left videos that no data.pkl lists, and the rerun was refused ("0.mp4 exist already")."""
    with pytest.raises(OSError):
        make_queries.make_queries("dropj_carracing/dream", _decoder(fail_after=3), 4, tmp_path, data_dir=str(built),
                                  seed=2, log=lambda line: None)
    folder = tmp_path / "queries_s20"
    assert (folder / "0.mp4").exists() and not (folder / "data.pkl").exists()
    assert make_queries.incomplete_marker(folder).exists()
    make_queries.make_queries("dropj_carracing/dream", _decoder(), 4, tmp_path, data_dir=str(built), seed=2,
                              log=lambda line: None)
    assert list(pickle.loads((folder / "data.pkl").read_bytes())) == [f"{i}.mp4" for i in range(4)]
    assert sorted(p.name for p in folder.glob("*.mp4")) == [f"{i}.mp4" for i in range(4)]
    assert not make_queries.incomplete_marker(folder).exists()


def test_one_make_queries_per_out_at_a_time(built, tmp_path):
    """Two `dropj make-queries` into one --out (start indices 0 and 6) both exited 0, wrote 12 videos, and
    data.pkl held 6."""
    folder = tmp_path / "queries_s20"
    folder.mkdir()
    holder = durable.take_lock(make_queries.output_lock(folder), "pid 1 on elsewhere, dropj make-queries")
    try:
        with pytest.raises(DataError, match=r"another dropj make-queries is writing here \(pid 1 on elsewhere") as err:
            make_queries.make_queries("dropj_carracing/dream", _decoder(), 2, tmp_path, data_dir=str(built),
                                      start_index=6, log=lambda line: None)
        _flags_exist(str(err.value))
    finally:
        durable.release_lock(holder)
    assert not list(folder.glob("*.mp4"))
    make_queries.make_queries("dropj_carracing/dream", _decoder(), 2, tmp_path, data_dir=str(built), start_index=6,
                              log=lambda line: None)
    assert list(pickle.loads((folder / "data.pkl").read_bytes())) == ["6.mp4", "7.mp4"]


def test_an_unfinished_batch_and_other_arguments_say_exactly_what_to_remove(built, tmp_path):
    with pytest.raises(OSError):
        make_queries.make_queries("dropj_carracing/dream", _decoder(fail_after=5), 4, tmp_path, data_dir=str(built),
                                  seed=2, log=lambda line: None)
    folder = tmp_path / "queries_s20"
    with pytest.raises(DataError, match="unfinished") as err:
        make_queries.make_queries("dropj_carracing/dream", _decoder(), 2, tmp_path, data_dir=str(built),
                                  start_index=6, log=lambda line: None)
    message = str(err.value)
    _flags_exist(message)
    assert "--force" not in message and "--seed 2 --start_index 0 --num_queries 4" in message
    [command] = re.findall(r"`(rm [^`]+)`", message)
    subprocess.run(shlex.split(command), check=True)  # what the message says to remove
    make_queries.make_queries("dropj_carracing/dream", _decoder(), 2, tmp_path, data_dir=str(built), start_index=6,
                              log=lambda line: None)
    assert sorted(p.name for p in folder.glob("*.mp4")) == ["6.mp4", "7.mp4"]
    with pytest.raises(DataError) as err:  # a video in the way (not ours): no --force to suggest
        (folder / "8.mp4").write_bytes(b"someone's")
        make_queries.make_queries("dropj_carracing/dream", _decoder(), 2, tmp_path, data_dir=str(built), start_index=8,
                                  log=lambda line: None)
    _flags_exist(str(err.value))


def _killed_before_the_marker_went(built, out, *, seed: int, num_queries: int) -> bytes:
    """The state a kill (or a power loss before the folder's flush) between writing data.pkl and removing the
    marker leaves: data.pkl lists the batch, and the batch's own marker is still there. Made by real runs: one
    that fails after its marker is written (its marker kept), the same command finishing it, the marker put
    back as it was. Returns the marker's bytes."""
    with pytest.raises(OSError):
        make_queries.make_queries("dropj_carracing/dream", _decoder(fail_after=1), num_queries, out,
                                  data_dir=str(built), seed=seed, log=lambda line: None)
    marker = make_queries.incomplete_marker(out / "queries_s20")
    written = marker.read_bytes()
    make_queries.make_queries("dropj_carracing/dream", _decoder(), num_queries, out, data_dir=str(built), seed=seed,
                              log=lambda line: None)
    assert not marker.exists()
    marker.write_bytes(written)
    return written


def test_a_kill_between_data_pkl_and_the_marker_removal_loses_no_video(built, tmp_path):
    """A leftover marker of a batch data.pkl lists: the rerun said "holds 3 queries already", the next batch
    was refused as "unfinished", and its `rm` deleted 0.mp4 1.mp4 2.mp4, which data.pkl lists."""
    _killed_before_the_marker_went(built, tmp_path, seed=1, num_queries=3)
    folder = tmp_path / "queries_s20"
    marker = make_queries.incomplete_marker(folder)
    lines: list[str] = []
    with pytest.raises(DataError, match="holds 3 queries already; pass --start_index") as err:  # the same command
        make_queries.make_queries("dropj_carracing/dream", _decoder(), 3, tmp_path, data_dir=str(built), seed=1,
                                  log=lines.append)
    _flags_exist(str(err.value))
    assert not marker.exists()
    [line] = [line for line in lines if str(marker) in line]
    assert "data.pkl lists its batch" in line and "removed" in line
    marker.write_bytes(json.dumps({"dataset": "dropj_carracing/dream", "seed": 1, "start_index": 0,
                                   "num_queries": 3}).encode())  # and once more: the next batch goes on
    make_queries.make_queries("dropj_carracing/dream", _decoder(), 2, tmp_path, data_dir=str(built), seed=1,
                              start_index=3, log=lines.append)
    assert list(pickle.loads((folder / "data.pkl").read_bytes())) == [f"{i}.mp4" for i in range(5)]
    assert sorted(p.name for p in folder.glob("*.mp4")) == [f"{i}.mp4" for i in range(5)]
    assert not marker.exists()


def test_the_rm_of_an_unfinished_batch_never_names_a_video_data_pkl_lists(built, tmp_path):
    """A marker whose batch data.pkl lists in part (3 of 4 here): the `rm` named the listed videos too."""
    _killed_before_the_marker_went(built, tmp_path, seed=1, num_queries=3)
    folder = tmp_path / "queries_s20"
    marker = make_queries.incomplete_marker(folder)
    marker.write_bytes(json.dumps({"dataset": "dropj_carracing/dream", "seed": 1, "start_index": 0,
                                   "num_queries": 4}).encode())
    (folder / "3.mp4").write_bytes((folder / "2.mp4").read_bytes())  # its one video that data.pkl does not list
    with pytest.raises(DataError, match="left 1 videos that data.pkl does not list") as err:
        make_queries.make_queries("dropj_carracing/dream", _decoder(), 2, tmp_path, data_dir=str(built), seed=1,
                                  start_index=4, log=lambda line: None)
    message = str(err.value)
    _flags_exist(message)
    assert "run that command again" not in message  # data.pkl lists part of it: its command would be refused
    [command] = re.findall(r"`(rm [^`]+)`", message)
    assert shlex.split(command)[1:] == [str(marker), str(folder / "3.mp4")]
    subprocess.run(shlex.split(command), check=True)  # what the message says to remove
    make_queries.make_queries("dropj_carracing/dream", _decoder(), 2, tmp_path, data_dir=str(built), seed=1,
                              start_index=3, log=lambda line: None)
    assert sorted(p.name for p in folder.glob("*.mp4")) == [f"{i}.mp4" for i in range(5)]
    assert list(pickle.loads((folder / "data.pkl").read_bytes())) == [f"{i}.mp4" for i in range(5)]
