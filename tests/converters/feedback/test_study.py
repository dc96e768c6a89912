"""The study's question flow (`dropj annotate`): exactly the GUIs' questions, buttons and responses entries."""

from __future__ import annotations

import itertools
import math
import re

import pytest

from dropj.converters.release import preferences as feedback
from dropj.converters.feedback.study import METHODS, Study
from dropj_datasets import schema
from dropj_datasets.schema import DataError

L, R, E, Y, N = schema.A_LEFT, schema.A_RIGHT, schema.A_EQUALLY, schema.A_YES, schema.A_NO


def _walk(study: Study, choose) -> list[tuple[str, str]]:
    answers = []
    while (question := study.next_question(answers)) is not None:
        answers.append((question.text, choose(question)))
    return answers


def _all_paths(study: Study) -> list[list[tuple[str, str]]]:
    """Every way through the questions, by exhaustive choice."""
    paths, frontier = [], [[]]
    while frontier:
        answers = frontier.pop()
        question = study.next_question(answers)
        if question is None:
            paths.append(answers)
            continue
        frontier += [answers + [(question.text, option)] for option in question.options]
    return paths


@pytest.mark.parametrize("method, patterns", [
    ("drop", {(L,), (R,)}),
    ("drope", {(L,), (R,), (E,)}),
    ("dropj", {(Y, N), (N, Y), (N, N), (Y, Y, L), (Y, Y, R), (Y, Y, E)}),
    ("mjust", {(j, p) for j in ("Default", "Grass", "Chuckhole", "Car") for p in (L, E, R)}),
])
def test_every_path_is_one_the_gui_allowed_and_gets_a_label(method, patterns):
    study = Study.for_method(method)
    paths = _all_paths(study)
    assert {tuple(a for _, a in path) for path in paths} == patterns
    for path in paths:
        entry = study.entry("3.mp4", path, seconds=[1.0] * len(path), total_time=len(path) + 0.5, repeat_count=2)
        expected_arity = 2 if method == "mjust" else 3
        assert all(len(item) == expected_arity for item in entry["responses"])
        assert [item[:2] for item in entry["responses"]] == path
        label = feedback.label_for(study.spec.method, entry["responses"], feedback.LabelWeights.of(study.spec))
        assert 0.0 <= label <= 1.0


def test_questions_and_buttons_are_the_studys():
    dropj = Study.for_method("dropj")
    assert dropj.next_question([]).text == "Does the left car stay safe?"
    assert dropj.next_question([]).options == ("Yes", "No")
    assert dropj.next_question([(schema.Q_LEFT_SAFE, Y)]).text == "Does the right car stay safe?"
    assert dropj.next_question([(schema.Q_LEFT_SAFE, Y), (schema.Q_RIGHT_SAFE, Y)]).options == ("Left", "Right",
                                                                                              "Equally")
    assert Study.for_method("drop").next_question([]).options == ("Left", "Right")
    mjust = Study.for_method("mjust").next_question([])
    assert (mjust.text, mjust.preselected) == ("Please give Justification", "Default")
    assert mjust.options == ("Default", "Grass", "Chuckhole", "Car")


@pytest.mark.parametrize("answers, message", [
    ([(schema.Q_RIGHT_SAFE, Y)], "out of order (expected 'Does the left car stay safe?')"),
    ([(schema.Q_LEFT_SAFE, "Maybe")], "'Maybe' is not an answer to 'Does the left car stay safe?'"),
    ([(schema.Q_LEFT_SAFE, Y), (schema.Q_RIGHT_SAFE, N), (schema.Q_PREFER, L)],
     "out of order (expected 'no further question')"),
    ([("Does the left car stay safe?", 1)], "expected [question, answer]"),
])
def test_a_path_the_gui_could_not_take_is_refused(answers, message):
    with pytest.raises(DataError, match=re.escape(message)):
        Study.for_method("dropj").next_question(answers)


def test_drop_offers_no_equally():
    with pytest.raises(DataError, match="'Equally' is not an answer"):
        Study.for_method("drop").next_question([(schema.Q_PREFER, E)])


@pytest.mark.parametrize("seconds, total, repeats, message", [
    ([-0.1, 1.0], 2.0, 0, "finite seconds"),
    ([math.nan, 1.0], 2.0, 0, "finite seconds"),
    ([1.0, 1.5], 2.0, 0, "add up to 2.500 s, more than the total 2.000 s"),
    ([1.0, 1.0], math.inf, 0, "finite seconds"),
    ([1.0, 1.0], 2.0, -1, "repeat_count must be an int"),
    ([1.0, 1.0], 2.0, True, "repeat_count must be an int"),
    ([1.0], 2.0, 0, "1 times for 2 answers"),
])
def test_impossible_times_are_refused(seconds, total, repeats, message):
    answers = [(schema.Q_LEFT_SAFE, Y), (schema.Q_RIGHT_SAFE, N)]
    with pytest.raises(DataError, match=message):
        Study.for_method("dropj").entry("1.mp4", answers, seconds=seconds, total_time=total, repeat_count=repeats)


def test_an_unfinished_query_has_no_entry():
    with pytest.raises(DataError, match="not finished"):
        Study.for_method("dropj").entry("1.mp4", [(schema.Q_LEFT_SAFE, Y)], seconds=[1.0], total_time=1.0,
                                        repeat_count=0)


def test_entries_have_the_release_structure_and_types():
    study = Study.for_method("dropj")
    entry = study.entry("17.mp4", [(schema.Q_LEFT_SAFE, Y), (schema.Q_RIGHT_SAFE, Y), (schema.Q_PREFER, E)],
                        seconds=[6, 1.25, 0.5], total_time=7.75, repeat_count=1)
    assert entry == {"video": "17.mp4", "repeat_count": 1, "total_time": 7.75, "responses": [
        (schema.Q_LEFT_SAFE, Y, 6.0), (schema.Q_RIGHT_SAFE, Y, 1.25), (schema.Q_PREFER, E, 0.5)]}
    assert all(type(item[2]) is float for item in entry["responses"]) and type(entry["total_time"]) is float
    assert study.skipped("4.mp4", total_time=3.0, repeat_count=0) == {
        "video": "4.mp4", "responses": "Skipped", "repeat_count": 0, "total_time": 3.0}
    with pytest.raises(DataError, match="a name like '17.mp4'"):
        study.skipped("../x", total_time=1.0, repeat_count=0)


def test_every_method_is_known():
    assert set(METHODS) == {"drop", "drope", "dropj", "mjust"}
    with pytest.raises(ValueError, match="choose one of drop, drope, dropj, mjust"):
        Study.for_method("DROPJ")
    assert [len(p) for p in itertools.islice(_all_paths(Study.for_method("drop")), 2)] == [1, 1]


# --- the study file (`dropj annotate --study`, issue 24) ------------------------------------------------------

def test_the_shipped_example_study_file_loads():
    from dropj.converters.feedback.study import load_study
    from factory import REPO

    plan = load_study(REPO / "docs" / "study.toml")
    assert (plan.method, plan.practice, plan.query_ids) == ("dropj", ("0.mp4",), ("1.mp4", "2.mp4", "3.mp4"))
    assert plan.admits(31) and not plan.admits(40) and plan.completion_code == "DROPJ-DEMO-7341"
    assert plan.play_through and plan.review and len(plan.sha256) == 64


GOOD = 'title = "t"\nmethod = "dropj"\nqueries = "dropj_carracing/queries"\nconsent = "c"\ninstructions = "i"\n'


def _load(tmp_path, text):
    from dropj.converters.feedback.study import load_study

    path = tmp_path / "study.toml"
    path.write_text(text)
    return load_study(path)


@pytest.mark.parametrize("text, said", [
    (GOOD + "sede = 3\n", "study.toml: unknown key 'sede' (expected one of title, method"),
    (GOOD + "seed = '3'\n", "study.toml: key 'seed': expected an int in [0, 2**63), got '3'"),
    (GOOD + "participants = [31, 31]\n", "key 'participants': expected a list of at most 100,000 distinct "
                                          "participant ids, ints in [0, 2**31), got list of 2"),
    (GOOD + "order = 'random'\n", "key 'order': expected one of ['shuffled', 'fixed'], got 'random'"),
    (GOOD + "play_through = 1\n", "key 'play_through': expected true or false, got 1"),
    (GOOD.replace('method = "dropj"', 'method = "dropk"'), "key 'method': expected one of ['drop', 'drope', "
                                                          "'dropj', 'mjust'], got 'dropk'"),
    (GOOD.replace('consent = "c"\n', ""), "key 'consent': missing (expected a non-empty string"),
    (GOOD.replace('consent = "c"', 'consent = "' + "x" * 30000 + '"'),
     "key 'consent': expected a non-empty string of at most 20,000 characters, got 'xxx"),
    (GOOD + "seed = \n", "study.toml: not a TOML file (Invalid value (at line 6, column 8))"),
])
def test_a_bad_study_file_is_one_error_naming_the_file_the_key_expected_and_got(tmp_path, text, said):
    with pytest.raises(DataError) as error:
        _load(tmp_path, text)
    assert said in str(error.value), str(error.value)
    assert len(str(error.value)) < 600  # bounded, whatever the file holds


def test_every_bad_key_is_said_at_once_and_a_missing_file_is_named(tmp_path):
    with pytest.raises(DataError) as error:
        _load(tmp_path, GOOD.replace('title = "t"\n', "") + "seed = -1\nreview = 'yes'\n")
    assert [part.split(":")[0] for part in str(error.value).split("; ")] == [
        str(tmp_path / "study.toml"), "key 'seed'", "key 'review'"], str(error.value)
    assert "key 'title': missing" in str(error.value)
    from dropj.converters.feedback.study import load_study

    with pytest.raises(DataError, match=r"nope\.toml: cannot read the study file \(No such file or directory\)"):
        load_study(tmp_path / "nope.toml")


def test_practice_and_study_queries_are_checked_against_the_query_set(tmp_path):
    plan = _load(tmp_path, GOOD + 'practice = ["0.mp4"]\nquery_ids = ["0.mp4", "9.mp4"]\n')
    with pytest.raises(DataError) as error:
        plan.study_queries(["0.mp4", "1.mp4"])
    assert "key 'query_ids': query '9.mp4' is not in dropj_carracing/queries" in str(error.value)
    assert "key 'practice': ['0.mp4'] also in 'query_ids' (a practice answer is never a study answer)" in str(
        error.value)
    plan = _load(tmp_path, GOOD + 'practice = ["0.mp4"]\n')
    assert plan.study_queries(["0.mp4", "1.mp4", "2.mp4"]) == ["1.mp4", "2.mp4"]  # all but the practice


def test_each_participant_has_their_own_seeded_order(tmp_path):
    queries = [f"{i}.mp4" for i in range(20)]
    plan = _load(tmp_path, GOOD + "seed = 7\n")
    orders = {user: plan.order_for(user, queries) for user in (1, 2)}
    assert all(sorted(order) == sorted(queries) for order in orders.values())
    assert orders[1] != orders[2] != queries
    assert plan.order_for(1, queries) == orders[1]  # the same (seed, user): the same order, anywhere
    assert plan.order_for(1, queries[:10]) == [q for q in orders[1] if q in queries[:10]]  # others never move
    assert _load(tmp_path, GOOD + "seed = 8\n").order_for(1, queries) != orders[1]
    assert _load(tmp_path, GOOD + "order = 'fixed'\n").order_for(1, queries) == queries
