"""Bad input gets one clear error (file, episode, step, field, expected vs got),
and a failed or killed build leaves nothing that looks complete."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import factory
import tensorflow_datasets as tfds

import dropj_datasets  # noqa: F401
from factory import legacy as legacy_factory
from dropj.converters.release import episodes as episodes_lib
from dropj.converters.store.legacy_pickle import UnsafePickleError
from dropj_datasets import schema
from dropj_datasets.schema import DataError

REAL = schema.spec_for("dropj_carracing", "real")
DREAM = schema.spec_for("dropj_carracing", "dream")


def _episode(length=3, seed=0):
    return legacy_factory.real_episode(REAL, length, np.random.default_rng(seed), "truncated")


def _replace(ep, t, field, value):
    items = list(ep[t])
    items[field] = value
    ep[t] = tuple(items)
    return ep


def _convert(ep, spec=REAL):
    return episodes_lib.from_legacy(ep, spec, file="raw.pkl", episode=7)


@pytest.mark.parametrize("field,value,message", [
    (1, np.zeros(3, np.float32),
     "raw.pkl, episode 7, step 1, field 'action': expected ndarray float64[3], got ndarray float32[3]"),
    (0, np.zeros((96, 96, 3), np.uint8),
     "raw.pkl, episode 7, step 1, field 'prev_obs': expected ndarray uint8[84, 84, 3], got ndarray uint8[96, 96, 3]"),
    (2, np.int64(-1), "raw.pkl, episode 7, step 1, field 'reward': expected Python int, got int64"),
    (2, True, "raw.pkl, episode 7, step 1, field 'reward': expected Python int, got bool"),
    (4, 0, "raw.pkl, episode 7, step 1, field 'done': expected Python float, got int"),
    (4, 1.0, "raw.pkl, episode 7, step 1, field 'done': expected 0.0 before the last step, got 1.0"),
    (5, {"grass": True},
     "raw.pkl, episode 7, step 1, field 'info['grass']': expected one of ['TimeLimit.truncated', 'crash', 'succ'], "
     "got unknown key 'grass'"),
    (5, {"crash": 1}, "raw.pkl, episode 7, step 1, field 'info['crash']': expected bool, got int"),
    (5, [], "raw.pkl, episode 7, step 1, field 'info': expected dict, got list"),
])
def test_one_wrong_field_names_file_episode_step_field_expected_and_got(field, value, message):
    ep = _replace(_episode(), 1, field, value)
    with pytest.raises(DataError) as err:
        _convert(ep)
    assert str(err.value) == message


def test_frames_stored_once_so_a_source_whose_frames_disagree_is_refused():
    ep = _episode()
    _replace(ep, 2, 0, ep[2][0].copy())
    ep[2][0][0, 0, 0] ^= 1
    with pytest.raises(DataError, match=r"step 2, field 'prev_obs': expected identical to obs of step 1"):
        _convert(ep)


def test_every_problem_of_an_episode_is_reported_at_once():
    ep = _episode(4)
    _replace(ep, 0, 1, np.zeros(2))
    _replace(ep, 3, 2, 1.5)
    ep[2] = ep[2][:5]
    with pytest.raises(DataError) as err:
        _convert(ep)
    text = str(err.value)
    assert text.startswith("3 problems:")
    assert ("step 0, field 'action'" in text and "step 2, field 'transition'" in text
            and "step 3, field 'reward'" in text)


def test_dream_dtype_quirk_is_enforced_not_guessed():
    rng = np.random.default_rng(0)
    states = legacy_factory.float32_exact_states(DREAM, 1, rng)
    plain, _ = legacy_factory.dream_episodes(DREAM, [3], states, rng)
    ep = plain[0]
    _replace(ep, 0, 0, ep[0][0].astype(np.float32))  # step 0 should be float64
    with pytest.raises(DataError,
                       match=r"step 0, field 'prev_obs': expected ndarray float64\[544\], got ndarray float32"):
        _convert(ep, DREAM)
    plain, _ = legacy_factory.dream_episodes(DREAM, [3], states, rng)
    _replace(plain[0], 1, 5, {"crash": True})
    with pytest.raises(DataError, match=r"step 1, field 'info\['crash'\]': expected an empty dict"):
        _convert(plain[0], DREAM)


def test_empty_and_non_list_episodes():
    with pytest.raises(DataError,
                       match="episode 7, field 'episode': expected at least one transition, got an empty list"):
        _convert([])
    with pytest.raises(DataError, match="expected list of transitions, got dict"):
        _convert({})


def _build(manual, data_dir, config="real", dataset="dropj_carracing"):
    return factory.build(f"{dataset}/{config}", manual, data_dir)


def _no_complete_dataset(data_dir: Path) -> bool:
    return not list(data_dir.rglob("dataset_info.json"))


def test_missing_source_file_is_named(tmp_path):
    legacy_factory.write_pickle(tmp_path / "m" / "some_other_release_file.pkl", [], 4)
    with pytest.raises(DataError, match=r"missing raw_user_rollouts_res84_ep600.pkl"):
        _build(tmp_path / "m", tmp_path / "d")
    assert _no_complete_dataset(tmp_path / "d")


def test_empty_manual_dir_shows_which_files_each_config_needs(tmp_path):
    (tmp_path / "m").mkdir()
    with pytest.raises(AssertionError, match=r"real: raw_user_rollouts_res84_ep600.pkl"):
        _build(tmp_path / "m", tmp_path / "d")


def test_a_bad_episode_fails_the_build_cleanly_and_a_rerun_succeeds(tmp_path):
    manual, data = tmp_path / "m", tmp_path / "d"
    rng = np.random.default_rng(1)
    good = [legacy_factory.real_episode(REAL, 3, rng) for _ in range(3)]
    bad = copy.deepcopy(good)
    _replace(bad[2], 1, 1, np.zeros(3, np.float32))
    path = legacy_factory.write_pickle(manual / REAL.sources.episodes, bad, 5)
    with pytest.raises(DataError, match=r"episode 2, step 1, field 'action'"):
        _build(manual, data)
    assert _no_complete_dataset(data)
    assert not tfds.builder("dropj_carracing/real", data_dir=str(data)).is_prepared()

    legacy_factory.write_pickle(path, good, 5)
    builder = _build(manual, data)
    assert builder.info.splits["train"].num_examples == 3


def test_truncated_archive_is_a_clear_error(tmp_path):
    manual = tmp_path / "m"
    legacy_factory.make_real_source(manual, REAL, lengths=(4, 4), in_zip=True)
    archive = manual / "release.zip"
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="release.zip"):
        _build(manual, tmp_path / "d")
    assert _no_complete_dataset(tmp_path / "d")


def test_truncated_pickle_is_a_clear_error(tmp_path):
    manual = tmp_path / "m"
    legacy_factory.make_real_source(manual, REAL, lengths=(4, 4))
    path = manual / "nested" / REAL.sources.episodes
    path.write_bytes(path.read_bytes()[:-5000])
    with pytest.raises(DataError, match=r"raw_user_rollouts_res84_ep600.pkl.*(truncated|corrupt)"):
        _build(manual, tmp_path / "d")
    assert _no_complete_dataset(tmp_path / "d")


def test_hostile_release_file_is_refused_before_running(tmp_path):
    marker = tmp_path / "PWNED"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    rng = np.random.default_rng(0)
    episodes = [legacy_factory.real_episode(REAL, 2, rng) for _ in range(3)]
    _replace(episodes[2], 1, 5, {"crash": Payload()})
    legacy_factory.write_pickle(tmp_path / "m" / REAL.sources.episodes, episodes, 5)
    with pytest.raises(UnsafePickleError, match="system"):
        _build(tmp_path / "m", tmp_path / "d")
    assert not marker.exists()
    assert _no_complete_dataset(tmp_path / "d")


def test_dream_files_that_disagree_are_refused(tmp_path):
    manual = tmp_path / "m"
    made = legacy_factory.make_dream_source(manual, DREAM, lengths=(3, 3))
    scaled = made["scaled"]
    _replace(scaled[1], 2, 3, scaled[1][2][3] + np.float32(1))
    legacy_factory.write_pickle(manual / DREAM.sources.scaled, scaled, 4)
    with pytest.raises(DataError,
                       match=r"episode 1, step 3, field 'observations': expected the same as in the env-unit file"):
        _build(manual, tmp_path / "d", config="dream")


def _processes_mentioning(text: str) -> list:
    import psutil

    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if any(text in part for part in process.info["cmdline"] or []):
                found.append(process)
        except psutil.Error:
            continue
    return found


@pytest.mark.slow
def test_killed_build_leaves_no_complete_dataset_and_rerun_succeeds(tmp_path):
    manual, data = tmp_path / "m", tmp_path / "d"
    legacy_factory.make_real_source(manual, REAL, lengths=(300,) * 12)
    code = (
        "import dropj_datasets, tensorflow_datasets as tfds, sys\n"
        f"b = tfds.builder('dropj_carracing/real', data_dir={str(data)!r})\n"
        f"b.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir={str(manual)!r}))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list(data.rglob("*incomplete*")):
        time.sleep(0.05)
    time.sleep(1.0)
    assert proc.poll() is None, "the build finished before it could be killed; make the source larger"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _no_complete_dataset(data)
    # The build's reader process must not outlive it as an orphan.
    deadline = time.time() + 10
    while time.time() < deadline and _processes_mentioning(str(manual)):
        time.sleep(0.2)
    assert not _processes_mentioning(str(manual))
    assert not tfds.builder("dropj_carracing/real", data_dir=str(data)).is_prepared()
    builder = _build(manual, data)
    assert builder.info.splits["train"].num_examples == 12


def test_cli_reports_data_errors_without_a_traceback(tmp_path):
    (tmp_path / "m").mkdir()
    proc = subprocess.run([sys.executable, "-m", "dropj_datasets.app", "verify", "dropj_carracing/real",
                           "--data_dir", str(tmp_path / "d"), "--manual_dir", str(tmp_path / "m")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "dropj verify: error: dropj_carracing/real: not built under" in proc.stderr
    assert "Traceback" not in proc.stderr
