"""User ids, one way for `dropj record` and `dropj annotate`: the release's integers, text ids mapped onto them."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys

import pytest

from dropj.converters.store import participants
from dropj_datasets.schema import DataError


@pytest.mark.parametrize("given, parsed", [("31", 31), ("0", 0), (" 27 ", 27), ("p07", "p07"), ("Ann B.", "Ann B.")])
def test_an_id_is_a_whole_number_or_a_short_printable_text(given, parsed):
    assert participants.parse(given) == parsed


@pytest.mark.parametrize("given, message", [("", "1 to 64 printable"), ("x" * 65, "1 to 64 printable"),
                                            ("a\nb", "printable"), ("-5", "printable"),
                                            (str(2**31), "at most 2,147,483,647")])
def test_anything_else_is_refused_plainly(given, message):
    with pytest.raises(ValueError, match=message):
        participants.parse(given)


def test_a_text_id_keeps_its_integer_and_a_number_is_itself(tmp_path):
    assert participants.resolve(tmp_path, "31") == 31 and not participants.path(tmp_path).exists()
    assert participants.resolve(tmp_path, "p07") == participants.FIRST_MAPPED
    assert participants.resolve(tmp_path, "p08") == participants.FIRST_MAPPED + 1
    assert participants.resolve(tmp_path, "p07") == participants.FIRST_MAPPED
    assert json.loads(participants.path(tmp_path).read_text()) == {"p07": 1000, "p08": 1001}


def _resolve(args):
    out, name = args
    return name, participants.resolve(out, name)


def test_tools_starting_at_once_give_each_text_id_one_integer(tmp_path):
    names = [f"p{k % 6}" for k in range(24)]
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        got = pool.map(_resolve, [(str(tmp_path), name) for name in names])
    by_name = {}
    for name, user in got:
        assert by_name.setdefault(name, user) == user
    assert sorted(by_name.values()) == list(range(1000, 1006))
    assert participants.read(tmp_path) == by_name


@pytest.mark.parametrize("content", [b"[1, 2]", b'{"p07": "1000"}', b'{"p07": 5}', b'{"a": 1000, "b": 1000}',
                                     b"\xff", b"{" * 100000])
def test_a_damaged_or_forged_file_is_one_error_and_left_as_it_is(tmp_path, content):
    path = participants.path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with pytest.raises(DataError, match=str(path)):
        participants.resolve(tmp_path, "p07")
    assert path.read_bytes() == content


def test_a_fifo_or_a_symlink_is_refused_without_blocking(tmp_path):
    path = participants.path(tmp_path)
    path.parent.mkdir(parents=True)
    os.mkfifo(path)
    with pytest.raises(DataError, match="not a regular file|participants file"):
        participants.read(tmp_path)
    path.unlink()
    (tmp_path / "elsewhere.json").write_text("{}")
    path.symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(DataError, match="a symlink"):
        participants.read(tmp_path)


def test_the_commands_take_the_same_ids(tmp_path):
    """`--user` of record and annotate: one type, one line for a bad one."""
    for command in (["record", "--out", str(tmp_path)], ["annotate", "dropj_carracing/queries", "--method", "dropj",
                                                         "--out", str(tmp_path)]):
        done = subprocess.run([sys.executable, "-m", "dropj_datasets.app", *command, "--user", "a\tb"],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert "argument --user: a user id is a whole number or 1 to 64 printable characters" in done.stderr


def test_annotate_says_the_integer_a_text_id_is_given_once(tmp_path):
    from dropj_datasets.app.web.annotate import resolve_user

    said = []
    assert resolve_user(str(tmp_path), "p07", said.append) == 1000
    assert said == [f"user 'p07' is user 1000 ({participants.path(tmp_path)} keeps the mapping)"]
    assert resolve_user(str(tmp_path), "p07", said.append) == 1000 and len(said) == 1
    assert resolve_user(str(tmp_path), 31, said.append) == 31 and resolve_user(str(tmp_path), None) is None
