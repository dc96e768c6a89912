"""`dropj build`, `dropj list`, `dropj info`, `dropj --version` and one naming (NAME/CONFIG[:VERSION], TFDS's split
slicing) as a user meets them: the real command in a subprocess, on the embedded sample."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import factory
from dropj.loaders import EpisodeSource
from dropj_datasets import schema
from factory.compare import assert_same

SAMPLE = factory.dummy_data("dropj_carracing")
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def dropj(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dropj_datasets.app", *map(str, args)], capture_output=True,
                          text=True, timeout=600, env=ENV, cwd=cwd or factory.REPO)


def one_line(done: subprocess.CompletedProcess, command: str, *fragments: str) -> str:
    assert done.returncode == 2, (done.returncode, done.stdout[-2000:], done.stderr[-2000:])
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"dropj {command}: error: "), done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "unexpected" not in lines[0], lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def the_command_in(line: str) -> list[str]:
    """The command a message tells the user to run (between backquotes)."""
    return shlex.split(line.split("`")[1])


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("data")
    done = dropj("build", "dropj_carracing/real", "--manual_dir", SAMPLE, "--data_dir", data)
    assert done.returncode == 0, done.stderr[-3000:]
    return data


def test_build_writes_what_tfds_build_writes_in_one_line(built, tmp_path):
    """Same files as TFDS's builder (`tfds build`), one line of ours on stdout, nothing on stderr (no
    DatasetInfo dump, no framework notices), and the dataset loads by name."""
    theirs = factory.build("dropj_carracing/real", SAMPLE, tmp_path)
    ours = built / "dropj_carracing" / "real" / "1.1.0"
    names = sorted(p.name for p in Path(theirs.data_dir).iterdir() if p.name.startswith("dropj_carracing-train"))
    assert names and names == sorted(p.name for p in ours.iterdir() if p.name.startswith("dropj_carracing-train"))
    for name in names:
        assert (ours / name).read_bytes() == (Path(theirs.data_dir) / name).read_bytes(), name
    again = dropj("build", "dropj_carracing/real:1.1.0", "--manual_dir", SAMPLE, "--data_dir", built)
    assert again.returncode == 0 and again.stderr == "", again.stderr[-2000:]
    assert again.stdout.strip() == f"dropj_carracing/real:1.1.0: already built in {ours} (delete that folder to " \
                                   "build it again)"


def test_build_of_a_new_config_prints_one_line_per_config(tmp_path):
    done = dropj("build", "dropj_carracing/preferences_dropj", "--manual_dir", SAMPLE, "--data_dir", tmp_path)
    assert done.returncode == 0 and done.stderr == "", done.stderr[-2000:]
    [line] = done.stdout.strip().splitlines()
    assert line.startswith("built dropj_carracing/preferences_dropj:1.1.0: 10 responses, ") and line.endswith(
        str(tmp_path / "dropj_carracing" / "preferences_dropj" / "1.1.0"))


@pytest.mark.slow
def test_build_of_a_name_builds_every_config_whose_files_are_there(tmp_path):
    manual = tmp_path / "m"
    shutil.copytree(SAMPLE, manual)
    for path in manual.rglob("dream_user_rollouts*"):  # dream's release files gone: that config is skipped
        path.unlink()
    done = dropj("build", "dropj_carracing", "--manual_dir", manual, "--data_dir", tmp_path / "d")
    assert done.returncode == 0 and done.stderr == "", done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == len(schema.DATASETS["dropj_carracing"])
    assert [line for line in lines if "skipped" in line] == [
        f"dropj_carracing/dream:1.1.0: skipped: dream_user_rollouts.pkl or dream_user_rollouts_scaled.pkl not under "
        f"{manual}"]
    built = sorted(p.name for p in (tmp_path / "d" / "dropj_carracing").iterdir() if p.is_dir() and p.name[0] != ".")
    assert built == sorted(c for c in schema.DATASETS["dropj_carracing"] if c != "dream")


def test_build_mistakes_are_one_line_and_their_advice_works(built, tmp_path):
    line = one_line(dropj("build", "dropj_carracing/reel", "--manual_dir", SAMPLE, "--data_dir", built), "build",
                    "did you mean 'dropj_carracing/real'?")
    assert "reel" in line
    one_line(dropj("build", "dropj_carracng", "--manual_dir", SAMPLE, "--data_dir", built), "build",
             "did you mean 'dropj_carracing'?")
    line = one_line(dropj("build", "dropj_carracing/real:1.0.0", "--manual_dir", SAMPLE, "--data_dir", built),
                    "build", "this suite builds version 1.1.0 of dropj_carracing")
    followed = dropj(*the_command_in(line)[1:], "--manual_dir", SAMPLE, "--data_dir", built)
    assert followed.returncode == 0 and "already built" in followed.stdout, followed.stderr
    one_line(dropj("build", "dropj_recording/carracing", "--manual_dir", SAMPLE), "build",
             "dropj_recording/carracing is written by `dropj record`, not built")
    one_line(dropj("build", "dropj_carracing/real", "--manual_dir", tmp_path / "none", "--data_dir", tmp_path),
             "build", f"{tmp_path / 'none'}: no such directory (--manual_dir is the folder holding")
    (tmp_path / "empty").mkdir()
    one_line(dropj("build", "dropj_carracing/real", "--manual_dir", tmp_path / "empty", "--data_dir", tmp_path),
             "build", "dropj_carracing/real needs raw_user_rollouts_res84_ep600.pkl, not found there")
    one_line(dropj("build", "dropj_carracing", "--manual_dir", tmp_path / "empty", "--data_dir", tmp_path),
             "build", "none of the release files of dropj_carracing is here")
    (tmp_path / "file").write_text("x")
    one_line(dropj("build", "dropj_carracing/real", "--manual_dir", SAMPLE, "--data_dir", tmp_path / "file"),
             "build", "not a directory (--data_dir is the folder to build in)")


def test_a_reader_told_it_is_not_built_is_told_a_build_that_works(tmp_path):
    line = one_line(dropj("stats", "dropj_carracing/dream", "--data_dir", tmp_path, "--out", tmp_path / "r.html"),
                    "stats", "dropj_carracing/dream: not built under")
    command = [part.replace("M", str(SAMPLE)) if part == "M" else part for part in the_command_in(line)]
    assert command[:2] == ["dropj", "build"]
    assert dropj(*command[1:]).returncode == 0
    assert dropj("stats", "dropj_carracing/dream", "--data_dir", tmp_path, "--out", tmp_path / "r.html").returncode == 0
    line = one_line(dropj("stats", "dropj_recording/carracing", "--data_dir", tmp_path, "--out", tmp_path / "r.html"),
                    "stats", "not built under")
    assert "`dropj record --out" in line


def test_list_says_what_is_built_incomplete_or_unreadable(built, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(built, data)
    (data / "dropj_carracing" / "dream" / "1.1.0.incomplete.ABC123").mkdir(parents=True)
    shutil.copytree(data / "dropj_carracing" / "real" / "1.1.0", data / "dropj_carracing" / "real" / "1.0.9")
    (data / "dropj_carracing" / "real" / "1.0.9" / "features.json").write_text("{}")
    done = dropj("list", "--data_dir", data)
    assert done.returncode == 0 and done.stderr == "", done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 4 and lines[0].split()[:3] == ["dataset", "kind", "items"]
    by_name = {line.split()[0]: line for line in lines[1:]}
    assert by_name["dropj_carracing/real:1.1.0"].split()[1:3] == ["episodes", "3"]
    assert by_name["dropj_carracing/real:1.1.0"].endswith("built")
    assert "unreadable: " in by_name["dropj_carracing/real:1.0.9"]
    assert by_name["dropj_carracing/dream:1.1.0"].endswith("incomplete")
    listed = json.loads(dropj("list", "--data_dir", data, "--json").stdout)
    assert {(e["dataset"], e["config"], e["version"], e["status"], e["items"]) for e in listed} == {
        ("dropj_carracing", "real", "1.1.0", "built", 3), ("dropj_carracing", "real", "1.0.9", "unreadable", None),
        ("dropj_carracing", "dream", "1.1.0", "incomplete", None)}
    empty = dropj("list", "--data_dir", tmp_path / "nothing")
    one_line(empty, "list", "no such directory")
    (tmp_path / "bare").mkdir()
    bare = dropj("list", "--data_dir", tmp_path / "bare")
    assert bare.returncode == 0 and bare.stdout.startswith(f"nothing built under {tmp_path / 'bare'}")


def test_info_is_the_config_card_in_text_and_json(built):
    spec = schema.spec_for("dropj_carracing", "real")
    facts = json.loads(dropj("info", "dropj_carracing/real", "--data_dir", built, "--json").stdout)
    assert facts["dataset"] == "dropj_carracing/real" and facts["version"] == "1.1.0"
    assert [f["name"] for f in facts["fields"]] == [f.name for f in spec.fields()]
    assert {tuple(f["shape"]) for f in facts["fields"] if f["name"] == "steps/observation"} == {(84, 84, 3)}
    assert facts["source_files"] == list(spec.all_sources) and facts["license"] == "CC-BY-4.0"
    assert facts["built"][0]["items"] == 3 and "@inproceedings" in facts["citation"]
    text = dropj("info", "dropj_carracing/real", "--data_dir", built)
    assert text.returncode == 0 and text.stderr == ""
    lines = text.stdout.splitlines()
    assert lines[0] == "dropj_carracing/real:1.1.0 (episodes)"
    assert any(line.startswith(f"  built under {built}: 1.1.0, 3 episodes") for line in lines)
    assert sum(line.startswith(("    steps/", "    episode_metadata/")) for line in lines) == \
        len(spec.fields())
    written = json.loads(dropj("info", "dropj_recording/carracing", "--json").stdout)
    assert written["made_by"] == "dropj record" and written["source_files"] == []
    one_line(dropj("info", "dropj_carracing/reel"), "info", "did you mean 'dropj_carracing/real'?")


def test_version():
    from importlib import metadata

    done = dropj("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"dropj {metadata.version('dropj-rlds')}"


@pytest.mark.parametrize("split", ["train", "train[:2]", "train[1:]", "train[-1:]", "train[:50%]", "train[34%:]",
                                   "train[1:2]"])
@pytest.mark.parametrize("name", ["dropj_carracing/real:1.1.0", "dropj_carracing"])
def test_episode_source_names_and_slices_as_tfds_load(built, name, split):
    import tensorflow_datasets as tfds

    import dropj_datasets  # noqa: F401

    ours = EpisodeSource(name, data_dir=built, split=split, progress=False)
    theirs = list(tfds.as_numpy(tfds.load(name, data_dir=str(built), split=split)))
    assert len(ours) == len(theirs)
    for i, example in enumerate(theirs):
        assert_same(ours[i], example, f"{name}[{split}][{i}]")
    assert list(ours.episode_lengths()) == [ours.num_steps(i) for i in range(len(ours))]


@pytest.mark.parametrize("name, split, message", [
    ("dropj_carracing/reel", "train", "did you mean 'dropj_carracing/real'?"),
    ("dropj_carracing/real:1.0.0", "train", "dropj_carracing/real:1.0.0 is not built under"),
    ("dropj_carracing/real", "test", "no split 'test'"),
    ("dropj_carracing/real", "train[:5]", "beyond the 3 records"),
    ("dropj_carracing/real", "train[::2]", "expected NAME or NAME[START:STOP]"),
])
def test_episode_source_refuses_what_does_not_exist_plainly(built, name, split, message):
    with pytest.raises(schema.DataError, match=message.replace("[", r"\[").replace(".", r"\.")):
        EpisodeSource(name, data_dir=built, split=split)


def test_list_with_tfds_default_data_dir_not_made_yet_says_nothing_is_built(tmp_path):
    done = subprocess.run([sys.executable, "-m", "dropj_datasets.app", "list"], capture_output=True, text=True,
                          timeout=120, env={**ENV, "TFDS_DATA_DIR": str(tmp_path / "not-yet")})
    assert done.returncode == 0 and done.stdout.startswith(f"nothing built under {tmp_path / 'not-yet'} ")
