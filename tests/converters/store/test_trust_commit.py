"""Issue 22, point 5: commit means committed, once (real TFDS directories, real EnvLogger sessions, a real small
tmpfs where the disk must fill up, and faults injected at the store's OS calls where it need not).

Every message that tells the user what to do is followed here, as the user would (`dropj repair-recording ...`
run as a command), and the data is checked to come back exactly once.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shlex
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

import dropj_datasets.envs  # noqa: F401
from dropj.converters.store import durable, shards
from dropj.converters.recording import capture as record, store as recording_store
from dropj_datasets import schema

GAS = np.array([0.0, 1.0, 0.0])
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", NO_GCE_CHECK="true")
SESSION = "commit-test-session"
PAGE = 4096


@contextlib.contextmanager
def small_tmpfs(folder: Path, size: str):
    """A real tmpfs of `size` mounted on `folder` (a skip where mounting is not allowed)."""
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode}): needs root")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def free_bytes(folder: Path) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def fill_leaving(folder: Path, leave: int) -> Path:
    """A filler file that leaves exactly `leave` bytes (a whole number of pages) free on the tmpfs."""
    filler = folder / "filler"
    size = free_bytes(folder) - leave
    assert size >= 0 and leave % PAGE == 0
    with open(filler, "wb") as f:
        f.write(b"\0" * size)
    assert free_bytes(folder) == leave
    return filler


def pages(size: int) -> int:
    return -(-size // PAGE) * PAGE


def _drive(recorder, episodes: int = 1) -> None:
    for _ in range(episodes):
        timestep = recorder.logger.reset()
        while not timestep.last():
            timestep = recorder.logger.step(GAS)


def _open(data_dir, seeds, log=lambda line: None):
    return record.open_recorder("carracing", data_dir, "tester", seeds=iter(seeds), session_id=SESSION,
                                gym_env=record.make_env("carracing", 5), log=log)


def _seeds(data_dir) -> list[tuple[int, int]]:
    """(episode_index, seed) of every episode a fresh open of the recording lists."""
    builder = tfds.builder_from_directory(str(record.recording_dir(data_dir, "carracing")))
    metas = [ex[schema.EPISODE_METADATA] for ex in tfds.as_numpy(builder.as_dataset(split="train"))]
    return [(int(m[schema.EPISODE_INDEX]), int(m[schema.SEED])) for m in metas]


def _follow(message: str) -> str:
    """Runs the `dropj ...` command a message gives (between backticks), as a user would; returns its stdout."""
    [command] = re.findall(r"`(dropj [^`]+)`", message)
    argv = shlex.split(command)
    done = subprocess.run([sys.executable, "-m", "dropj_datasets.app", *argv[1:]], capture_output=True, text=True,
                          env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """The system's temporary folder, as the store sees it, is one of this test's own."""
    folder = tmp_path / "system-tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.mark.slow
def test_a_disk_with_room_for_the_shard_but_not_the_listing_stores_the_episode_once(tmp_path, private_tmp):
    """On a full disk the shard was linked and counted, the recorder said "could not be written", rescued an
    episode already in the directory, and `repair-recording` then stored it twice (episode_index 0,1,2,1)."""
    scratch = tmp_path / "scratch"  # the same two episodes on a roomy disk: the size of the second shard
    rec = _open(scratch, [11, 12])
    _drive(rec, 2)
    rec.close()
    second = pages(recording_store.shard_path(record.recording_dir(scratch, "carracing"), 1,
                                              schema.RECORDING_DATASET).stat().st_size)

    with small_tmpfs(tmp_path / "disk", "4m") as disk:
        lines: list[str] = []
        rec = _open(disk, [11, 12], log=lines.append)
        _drive(rec)
        directory = record.recording_dir(disk, "carracing")
        filler = fill_leaving(disk, second)  # the shard fits exactly, its listing does not
        _drive(rec)
        rescued = list(rec.writer.rescued)
        rec.close()
        [message] = [line for line in lines if "could not be written" in line]
        assert "No space left on device" in message and str(directory / "dataset_info.json") in message
        # told "not stored": then nothing of it is there for the next open, and it is kept in a rescue file
        assert len(rescued) == 1 and Path(rescued[0]).exists()
        assert recording_store.shards_on_disk(directory, schema.RECORDING_DATASET) == [0]
        assert _seeds(disk) == [(0, 11)]
        filler.unlink()
        summary = _follow(message)
        assert "2 episodes listed" in summary
        assert _seeds(disk) == [(0, 11), (1, 12)]  # exactly once, numbered in place
        assert not Path(rescued[0]).exists()


def _failing_listing(monkeypatch, *, after_replace: bool = False):
    """The next write of dataset_info.json fails with ENOSPC (or, `after_replace`, fails to flush its folder
    after the new list was renamed into place)."""
    real = shards.write_atomically
    state = {"armed": True}

    def write_atomically(path, write, **kwargs):
        if state["armed"] and path.name == recording_store.DATASET_INFO:
            state["armed"] = False
            if after_replace:
                real(path, write, **kwargs)
                raise OSError(errno.EIO, "Input/output error")
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, write, **kwargs)

    monkeypatch.setattr(shards, "write_atomically", write_atomically)
    return state


def test_a_listing_that_fails_after_the_link_takes_the_shard_back_and_repair_adds_it_once(tmp_path, private_tmp,
                                                                                          monkeypatch):
    """The same case as above at the OS-call level, always run: the store resolves it, never the caller."""
    lines: list[str] = []
    rec = _open(tmp_path, [21, 22, 23], log=lines.append)
    _drive(rec)
    _failing_listing(monkeypatch)
    _drive(rec, 2)
    rec.close()
    directory = record.recording_dir(tmp_path, "carracing")
    [message] = [line for line in lines if "could not be written" in line]
    assert "episode 1 could not be written" in message and "No space left on device" in message
    assert _seeds(tmp_path) == [(0, 21), (1, 23)]  # the one told "failed" left no trace; the next one goes on
    assert recording_store.shards_on_disk(directory, schema.RECORDING_DATASET) == [0, 1]
    monkeypatch.undo()
    _follow(message)
    assert _seeds(tmp_path) == [(0, 21), (1, 23), (2, 22)]


def test_a_listing_renamed_into_place_counts_as_stored_and_is_not_rescued(tmp_path, private_tmp, monkeypatch):
    lines: list[str] = []
    rec = _open(tmp_path, [31, 32, 33], log=lines.append)
    _drive(rec)
    _failing_listing(monkeypatch, after_replace=True)
    _drive(rec, 2)
    rec.close()
    assert not rec.writer.rescued and not [line for line in lines if "could not be written" in line]
    assert _seeds(tmp_path) == [(0, 31), (1, 32), (2, 33)]


def test_a_rescue_in_the_system_temporary_folder_comes_back_by_following_the_message(tmp_path, private_tmp,
                                                                                       monkeypatch):
    """With the disk full the rescue went to TMPDIR/dropj-rescued/ and the message said to run `dropj
    repair-recording DIR`, which reads only DIR/rescued/: "0 episodes listed". Following the message lost it."""
    lines: list[str] = []
    rec = _open(tmp_path, [41, 42], log=lines.append)
    directory = Path(rec.writer.directory)
    (directory / recording_store.RESCUED).write_bytes(b"")  # DIR/rescued/ cannot be made: a file is in the way
    _failing_listing(monkeypatch)
    _drive(rec, 2)
    rec.close()
    [message] = [line for line in lines if "could not be written" in line]
    [rescued] = rec.writer.rescued
    assert Path(rescued).is_relative_to(private_tmp) and rescued in message
    monkeypatch.undo()
    (directory / recording_store.RESCUED).unlink()
    _follow(message)
    assert _seeds(tmp_path) == [(0, 42), (1, 41)]
    assert not Path(rescued).exists()


def test_repair_never_stores_a_rescued_episode_twice(tmp_path, private_tmp, monkeypatch):
    """A rescue of an episode that is listed (a caller told "failed" about stored data, as before issue 22, or a
    power loss that undid the undo) is recognised by its content and not added again."""
    lines: list[str] = []
    rec = _open(tmp_path, [51, 52], log=lines.append)
    real_append = recording_store.RecordingStore.append

    def stored_then_failed(self, example, **kwargs):
        path = real_append(self, example, **kwargs)
        if self.count == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return path

    monkeypatch.setattr(recording_store.RecordingStore, "append", stored_then_failed)
    _drive(rec, 2)
    rec.close()
    monkeypatch.undo()
    [message] = [line for line in lines if "could not be written" in line]
    [rescued] = rec.writer.rescued
    summary = _follow(message)
    assert "2 episodes listed" in summary and "already listed" in summary
    assert _seeds(tmp_path) == [(0, 51), (1, 52)]
    assert not Path(rescued).exists()


def test_write_atomically_names_the_file_when_the_disk_is_full(tmp_path):
    """`dropj export` on a full disk said `[Errno 28] No space left on device` without naming the file."""
    target = tmp_path / "out" / "file.pkl"

    def full(f):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as info:
        durable.write_atomically(target, full)
    assert info.value.filename == str(target) and info.value.errno == errno.ENOSPC
    assert not list(target.parent.iterdir())


@pytest.mark.slow
def test_export_on_a_full_disk_names_the_file_in_one_line(tmp_path):
    import factory

    data = tmp_path / "data"
    factory.build("dropj_carracing/real", factory.dummy_data("dropj_carracing"), data)
    with small_tmpfs(tmp_path / "disk", "64k") as disk:
        done = subprocess.run([sys.executable, "-m", "dropj_datasets.app", "export", "dropj_carracing/real",
                               "--data_dir", str(data), "--out", str(disk / "legacy")], capture_output=True,
                              text=True, env=ENV, timeout=300)
        assert done.returncode == 2
        [line] = done.stderr.strip().splitlines()
        assert re.match(rf"dropj export: error: {re.escape(str(disk))}/legacy/\S+\.pkl: No space left on device$",
                        line), line
        assert not [p for p in (disk / "legacy").rglob("*") if p.is_file()]


def _rescue_in_tmp(tmp_path, seeds, lines):
    """Records two episodes where the second cannot be written and DIR/rescued/ cannot be made: its rescue goes
    to the system's temporary folder. Returns (directory, the rescue file, the message)."""
    rec = _open(tmp_path, seeds, log=lines.append)
    directory = Path(rec.writer.directory)
    (directory / recording_store.RESCUED).write_bytes(b"")  # a file in the way
    real = shards.write_atomically
    state = {"armed": True}

    def write_atomically(path, write, **kwargs):
        if state["armed"] and path.name == recording_store.DATASET_INFO:
            state["armed"] = False
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, write, **kwargs)

    shards.write_atomically = write_atomically
    try:
        _drive(rec, 2)
    finally:
        shards.write_atomically = real
        rec.close()
    (directory / recording_store.RESCUED).unlink()
    [message] = [line for line in lines if "could not be written" in line]
    [rescued] = rec.writer.rescued
    return directory, Path(rescued), message


def test_rescues_in_the_system_temporary_folder_go_to_a_private_folder_of_this_user(tmp_path, private_tmp):
    """Rescues went to TMPDIR/dropj-rescued/, shared by every user, made with the default mode (0755): another
    user could read the participants' episodes there."""
    lines: list[str] = []
    _, rescued, message = _rescue_in_tmp(tmp_path, [61, 62], lines)
    folder = rescued.parent
    assert folder == private_tmp / f"dropj-rescued-{os.getuid()}"
    info = os.lstat(folder)
    assert stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) == 0o700
    _follow(message)  # the message's command still adds it back
    assert _seeds(tmp_path) == [(0, 62), (1, 61)]


@pytest.mark.parametrize("planted", ["symlink", "open to others", "another user's"])
def test_a_temporary_rescue_folder_someone_else_made_is_refused_by_name(tmp_path, private_tmp, planted):
    """Another user who made the shared rescue folder first (or a symlink by its name) got every rescue: to read,
    to lose, or to plant files that `repair-recording DIR FOLDER` then added."""
    folder = private_tmp / f"dropj-rescued-{os.getuid()}"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    if planted == "symlink":
        folder.symlink_to(elsewhere)
    elif planted == "open to others":
        folder.mkdir()
        folder.chmod(0o777)
    else:
        if os.getuid() != 0:
            pytest.skip("giving a folder to another user needs root")
        folder.mkdir(mode=0o700)
        os.chown(folder, 65534, 65534)
    directory = tmp_path / "dir"
    directory.mkdir()
    (directory / recording_store.RESCUED).write_bytes(b"")  # DIR/rescued/ cannot be made: a file is in the way
    with pytest.raises(recording_store.RecordingError, match="could not keep it in a rescue file") as err:
        recording_store.write_rescue(directory, "carracing", "episode", {"steps": {}}, 3, "s")
    assert f"{folder}: " in str(err.value) and "not a private folder of this user" in str(err.value)
    assert not list(elsewhere.iterdir()) and not (folder.is_dir() and list(folder.iterdir()))


def test_repair_of_a_named_folder_takes_this_directorys_rescues_and_skips_the_others(tmp_path, private_tmp):
    """`repair-recording DIR FOLDER` stopped partway at a rescue file of another config ("not a rescued item
    of carracing"), and took an old rescue file that names no directory from the shared folder."""
    import pickle

    lines: list[str] = []
    directory, rescued, _ = _rescue_in_tmp(tmp_path, [71, 72], lines)
    folder = rescued.parent
    other_config = recording_store.write_rescue(tmp_path / "chuckc", "chuckc", "episode", {"steps": {}}, 0, "x")
    other_config = Path(other_config)
    moved = folder / other_config.name
    os.replace(other_config, moved)  # a rescue of another config, kept in the same folder
    value = pickle.loads(rescued.read_bytes())
    del value["directory"]  # from before rescue files named their directory: whose it is, no one can say
    old = folder / "episode-1-old-000000.pkl"
    old.write_bytes(pickle.dumps(value, protocol=5))
    done = subprocess.run([sys.executable, "-m", "dropj_datasets.app", "repair-recording", str(directory),
                           str(folder)], capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "2 episodes listed" in done.stdout and "1 of them rescued episodes added back" in done.stdout
    assert "2 rescue files of other directories or configs left where they are" in done.stdout
    assert _seeds(tmp_path) == [(0, 72), (1, 71)]
    assert moved.exists() and old.exists() and not rescued.exists()
    with pytest.raises(recording_store.RecordingError, match="not a rescued item of carracing"):
        recording_store.repair(directory, [moved], log=lambda line: None)  # named on its own: refused
