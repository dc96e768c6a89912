"""`dropj.loaders.statistics`: the figures `dropj stats` and `dropj serve` show, from the numbers alone (no
frame read, no TensorFlow), equal to the TFDS path's on every sample config, kept beside the index and
recounted whenever the shards change or the kept file is anything but sound."""

from __future__ import annotations

import collections
import json
import logging
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dropj.loaders import statistics
from dropj.loaders.episode_source import EpisodeSource
from dropj.loaders.tfrecord_wire import _masked_crc32c
from dropj_datasets import schema
from dropj_datasets.app import views
from factory import build, dummy_data

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
OLD = 1_500_000_000  # an mtime long past: a shard that settled (the index is kept only then)


# --- today's TFDS path, as `app/views.py` computed it before the TF-free reader (the reference) -----------

def _today(built) -> dict:
    """`views.statistics` as it was: every example through TFDS, frames included, kept verbatim."""
    def text(value):
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)

    def items():
        for index, example in enumerate(built.examples()):
            if index >= 100_000:
                return
            yield example

    shown_as = schema.kind_of(built.spec).shown_as
    if shown_as == schema.RESPONSE_VIEW:
        answers, labels = collections.Counter(), collections.Counter()
        times, repeats, skipped, users, given = [], [], 0, [], []
        for example in items():
            response = example[schema.RESPONSE]
            times.append(float(response[schema.TOTAL_TIME]))
            repeats.append(int(response[schema.REPEAT_COUNT]))
            users.append(int(example[schema.ANNOTATOR][schema.USER_ID]))
            given.append(None if response[schema.SKIPPED] else
                         "/".join(text(a) for a in response[schema.ANSWERS][schema.ANSWER]))
            if response[schema.SKIPPED]:
                skipped += 1
                continue
            answers[given[-1]] += 1
            labels[round(float(example[schema.LABEL]), 4)] += 1
        return {"kind": built.spec.kind, "items": len(times), "skipped": skipped,
                "answers": dict(answers.most_common()), "labels": dict(sorted(labels.items())), "total_time": times,
                "repeat_count": repeats, "annotators": dict(sorted(collections.Counter(users).items())),
                "user_per_response": users, "answer_per_response": given}
    if shown_as == schema.QUERY_VIEW:
        sizes = [len(example[schema.VIDEO]) for example in items()]
        return {"kind": built.spec.kind, "items": len(sizes), "video_bytes": sizes}
    extra_last = schema.kind_of(built.spec).extra_last_step
    lengths, returns, terminal = [], [], []
    flags = collections.defaultdict(list)
    actions = []
    rewards = collections.Counter()
    for example in items():
        steps = example[schema.STEPS]
        n = len(steps[schema.IS_FIRST]) - extra_last
        lengths.append(n)
        episode_rewards = np.asarray(steps[schema.REWARD])[:n]
        returns.append(float(np.sum(episode_rewards)))
        rewards.update(float(r) for r in episode_rewards)
        terminal.append(bool(np.any(steps[schema.IS_TERMINAL])))
        for name, column in (steps.get(schema.INFO) or {}).items():
            flags[name].append(int(np.sum(np.asarray(column)[:n] == schema.INFO_TRUE)))
        action = np.asarray(steps[schema.ACTION], dtype=np.float64)[:n]
        actions.append(action[np.isfinite(action).all(axis=1)])
    stacked = np.concatenate(actions) if actions else np.zeros((0, 3))
    return {"kind": built.spec.kind, "items": len(lengths), "lengths": lengths, "returns": returns,
            "terminal": sum(terminal), "terminal_per_episode": terminal, "flags_per_episode": dict(flags),
            "rewards": dict(sorted(rewards.items())),
            "actions": {name: stacked[:, k].tolist() for k, name in enumerate(("steer", "gas", "brake"))}}


def _same(ours: dict, theirs: dict) -> bool:
    """Equal figures, of equal types, in the same order (the page lists them in dict order)."""
    return repr(ours) == repr(theirs)


# --- every config of the sample --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> dict[str, Path]:
    """Every config of the embedded sample, built: 'dataset/config' -> its version folder."""
    data = tmp_path_factory.mktemp("data")
    return {f"{dataset}/{config}": Path(build(f"{dataset}/{config}", dummy_data(dataset), data).data_dir)
            for dataset, configs in schema.DATASETS.items() for config in configs}


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    """A `dropj record` directory (the recordings kind, written by EnvLogger's backend): 2 short episodes."""
    from dropj.converters.recording import capture

    data = tmp_path_factory.mktemp("recordings")
    recorder = capture.open_recorder("carracing", data, "driver-1", session_id="s1", seeds=iter([7, 8]),
                                     keys_held=lambda: (False, False, True, False), gym_env=capture.make_env(
                                         "carracing", 25))
    for episode in range(2):
        timestep, t = recorder.logger.reset(), 0
        while not timestep.last():
            timestep = recorder.logger.step(np.array([0.3 * (t % 3 - 1), 1.0, 0.2 * (episode == 1)]))
            t += 1
    recorder.close()
    return capture.recording_dir(data, "carracing")


def _settled(directory: Path, at: int = OLD) -> None:
    """Shards written in the last seconds are indexed in memory only: date them back so the index is kept."""
    for shard in directory.glob("*.tfrecord-*"):
        os.utime(shard, ns=(at * 10**9, at * 10**9))


@pytest.mark.slow
def test_the_figures_are_the_tfds_paths_on_every_sample_config_counted_and_kept(sample, recording, subtests):
    shown = set()
    for name, directory in [*sample.items(), ("dropj_recording/carracing", recording)]:
        with subtests.test(config=name):
            _settled(directory)
            shutil.rmtree(directory / "dropj_index", ignore_errors=True)
            built = views.open_built(str(directory))
            theirs = _today(built)
            counted = views.statistics(built)
            assert (directory / "dropj_index" / "train.stats").is_file()
            kept = views.statistics(built)
            assert _same(counted, theirs) and _same(kept, theirs)
            assert _same(views.statistics_through_tfds(built), theirs)
            assert views.report(built, kept) == views.report(built, theirs)
            assert theirs["items"] == built.count > 0
            shown.add(schema.kind_of(built.spec).shown_as)
    assert shown == {schema.EPISODE_VIEW, schema.QUERY_VIEW, schema.RESPONSE_VIEW}


def test_the_fields_counted_are_numbers_never_a_frame():
    for configs in [*schema.DATASETS.values(), *schema.WRITTEN.values()]:
        for spec in configs.values():
            names = statistics.fields(spec)
            by_name = {field.name: field for field in spec.fields()}
            assert names and set(names) <= set(by_name), spec
            assert not any(by_name[n].encoding == "png" or n.endswith("observation") for n in names), (spec, names)


# --- one copy of `real`, changed in each test ------------------------------------------------------------

@pytest.fixture(scope="module")
def real(sample) -> Path:
    return sample["dropj_carracing/real"]


@pytest.fixture
def copy(real, tmp_path) -> Path:
    target = tmp_path / "copy" / real.name
    shutil.copytree(real, target, ignore=shutil.ignore_patterns("dropj_index"))
    _settled(target)
    return target


def _figures(directory: Path) -> dict:
    with EpisodeSource(directory, progress=False) as source:
        return statistics.of(source)


def _kept(directory: Path) -> Path:
    return directory / "dropj_index" / "train.stats"


def _reference(real: Path) -> dict:
    return _today(views.open_built(str(real)))


@pytest.mark.slow
def test_frames_are_neither_decoded_nor_read(real, copy, monkeypatch):
    with EpisodeSource(copy) as source:
        frames = [(int(source.index.records[i, 1]), source.index.items_of(i, 0)) for i in range(len(source))]
        assert source.index.bytes_fields[0] == "steps/observation"
    shard = next(copy.glob("*.tfrecord-*"))
    data = bytearray(shard.read_bytes())
    frame_bytes = 0
    for offset, items in frames:  # every frame's PNG bytes made garbage (the records' CRCs are not checked)
        for start, length in zip(items.starts.tolist(), items.lengths.tolist()):
            data[offset + start:offset + start + length] = b"\xff" * length
            frame_bytes += length
    shard.write_bytes(bytes(data))
    _settled(copy)
    with EpisodeSource(copy) as source, pytest.raises(schema.DataError, match="observation"):
        source[0]  # the frames cannot be decoded any more
    read = []
    for name in ("pread", "preadv"):
        original = getattr(os, name)

        def counting(fd, what, offset, original=original):
            done = original(fd, what, offset)
            read.append(done if isinstance(done, int) else len(done))
            return done
        monkeypatch.setattr(os, name, counting)
    with EpisodeSource(copy) as source:
        source.index  # made before counting what the figures read
        read.clear()
        figures = statistics.of(source, keep=False)
    assert _same(figures, _reference(real))
    assert sum(read) < frame_bytes / 4, (sum(read), frame_bytes)


def test_select_gives_what_the_whole_example_gives(real):
    with EpisodeSource(real) as source:
        names = statistics.fields(source.spec)
        for i in range(len(source)):
            part, whole = source.select(i, names), source[i]
            assert set(part["steps"]) == {"is_first", "reward", "is_terminal", "action", "info"}
            for key, value in part["steps"].items():
                if key == "info":
                    for flag, column in value.items():
                        np.testing.assert_array_equal(column, whole["steps"]["info"][flag])
                else:
                    assert value.dtype == whole["steps"][key].dtype
                    np.testing.assert_array_equal(value, whole["steps"][key])
        with pytest.raises(KeyError, match="no field"):
            source.select(0, ["steps/nope"])


# --- invalidation ----------------------------------------------------------------------------------------

def _rewrite_first_action(directory: Path, action: tuple[float, float, float]) -> None:
    """Episode 0's first action, changed in place in the shard, with its record's CRC made right again."""
    with EpisodeSource(directory) as source:
        field = source.index.bytes_fields.index("steps/action")
        _, offset, length, _ = (int(v) for v in source.index.records[0])
        start = int(source.index.items_of(0, field).starts[0])
    shard = next(directory.glob("*.tfrecord-*"))
    data = bytearray(shard.read_bytes())
    data[offset + start:offset + start + 24] = np.array(action, "<f8").tobytes()
    data[offset + length:offset + length + 4] = _masked_crc32c(bytes(data[offset:offset + length])).to_bytes(
        4, "little")
    shard.write_bytes(bytes(data))


@pytest.mark.slow
def test_kept_figures_are_recounted_when_a_shard_changes(real, copy, caplog):
    before = _figures(copy)
    assert _kept(copy).is_file() and _same(before, _reference(real))
    _rewrite_first_action(copy, (0.5, 0.25, 0.125))
    fresh = _figures(copy)  # written just now: the index and the figures live in memory, the kept ones unused
    assert fresh["actions"]["steer"][0] == 0.5 and fresh["actions"]["brake"][0] == 0.125
    _settled(copy, OLD + 60)  # settled, its mtime another than when they were kept: recounted and kept again
    with caplog.at_level(logging.INFO, "dropj.loaders"):
        again = _figures(copy)
    assert "the shards changed since they were counted" in caplog.text
    assert _same(again, fresh) and _same(again, _today(views.open_built(str(copy))))
    assert _header_and_rest(_kept(copy))[0]["key"]["shards"][0][2] == (OLD + 60) * 10**9  # the new key
    caplog.clear()
    with caplog.at_level(logging.INFO, "dropj.loaders"):
        assert _same(_figures(copy), fresh)
    assert "counting" not in caplog.text  # read back


# --- a kept file is input: anything wrong is ignored and recounted ---------------------------------------

def _header_and_rest(path: Path) -> tuple[dict, bytes]:
    data = path.read_bytes()
    length = int.from_bytes(data[8:12], "little")
    return json.loads(data[12:12 + length]), data[12 + length:]


def _with_header(path: Path, header: dict, rest: bytes) -> None:
    text = json.dumps(header).encode()
    text += b" " * (-(12 + len(text)) % 8)
    path.write_bytes(b"DROPJSTS" + len(text).to_bytes(4, "little") + text + rest)


def _corruptions(path: Path) -> dict:
    header, rest = _header_and_rest(path)
    good = path.read_bytes()
    length = int.from_bytes(good[8:12], "little")
    cases = {
        "empty": lambda: path.write_bytes(b""),
        "garbage": lambda: path.write_bytes(os.urandom(4096)),
        "truncated": lambda: path.write_bytes(good[:len(good) // 2]),
        "one byte more": lambda: path.write_bytes(good + b"\0"),
        "another magic": lambda: path.write_bytes(b"DROPJIDX" + good[8:]),
        "a header length past the file": lambda: path.write_bytes(good[:8] + (1 << 31).to_bytes(4, "little")
                                                                  + good[12:]),
        "a header that is not JSON": lambda: path.write_bytes(good[:12] + b"{" * length + good[12 + length:]),
        "NaN in the header": lambda: _with_header(path, {**header, "terminal": math.nan}, rest),
        "a count that is a string": lambda: _with_header(path, {**header, "items": "3"}, rest),
        "a count that is a bool": lambda: _with_header(path, {**header, "terminal": True}, rest),
        "a negative count": lambda: _with_header(path, {**header, "rewards": -1}, rest),
        "a count of billions": lambda: _with_header(path, {**header, "actions": 10**12}, rest),
        "flags that are not names": lambda: _with_header(path, {**header, "flags": [1, 2]}, rest),
        "another format": lambda: _with_header(path, {**header, "key": {**header["key"], "format": 99}}, rest),
        "other shards": lambda: _with_header(path, {**header, "key": {**header["key"], "shards": []}}, rest),
        "lengths other than the index's": lambda: path.write_bytes(
            good[:len(good) - len(rest)] + (np.frombuffer(rest[:24], "<i8") + 1).tobytes() + rest[24:]),
        "more actions than transitions": lambda: _with_header(path, {**header, "actions": header["actions"] + 1},
                                                              rest + b"\0" * 24),
        "a directory": lambda: (path.unlink(), path.mkdir()),
        "a FIFO": lambda: (path.unlink(), os.mkfifo(path)),
        "a symlink to the good file": lambda: (path.rename(path.with_name("elsewhere")),
                                               path.symlink_to(path.with_name("elsewhere"))),
        "a sparse file of a terabyte": lambda: os.truncate(path, 1 << 40),
    }
    return cases


@pytest.mark.slow
def test_a_bad_kept_file_is_ignored_and_recounted_never_trusted(real, copy, subtests):
    truth = _reference(real)
    assert _same(_figures(copy), truth)
    path = _kept(copy)
    good = path.read_bytes()
    for name, corrupt in _corruptions(path).items():
        with subtests.test(corruption=name):
            for leftover in (path, path.with_name("elsewhere")):
                if leftover.is_dir() and not leftover.is_symlink():
                    leftover.rmdir()
                elif os.path.lexists(leftover):
                    leftover.unlink()
            path.write_bytes(good)
            corrupt()
            assert _same(_figures(copy), truth)
            if name in ("a directory", "a FIFO"):  # not ours to replace: left alone, the figures counted
                assert not path.is_file() or path.is_symlink()
            elif name.startswith("a symlink"):
                assert path.is_symlink()  # never written through, nor replaced
            else:
                assert path.read_bytes() == good  # written over with the sound figures
    for leftover in (path, path.with_name("elsewhere")):
        if leftover.is_dir() and not leftover.is_symlink():
            leftover.rmdir()
        elif os.path.lexists(leftover):
            leftover.unlink()


def test_the_statistics_import_no_tensorflow(real):
    code = ("import sys\nfrom dropj.loaders import EpisodeSource, statistics\n"
            f"figures = statistics.of(EpisodeSource({str(real)!r}, progress=False))\n"
            "print(figures['items'], sum(figures['lengths']))\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'torch', 'rlds', 'reverb')))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    counts, modules = done.stdout.splitlines()
    assert counts.startswith("3 ") and modules == "[]"
