"""The experimenter's figures (`dropj.loaders.agreement`) against hand-computed textbook examples and edge cases."""

from __future__ import annotations

import json
import math

import pytest

from dropj.loaders import agreement
from dropj.loaders.agreement import COHEN, FLEISS, Row
from dropj_datasets import schema

YES_NO = [(schema.Q_LEFT_SAFE, (schema.A_YES, schema.A_NO))]


def test_cohen_on_the_textbook_two_by_two_table():
    # 50 items: both Yes 20, rater 1 Yes / rater 2 No 5, No / Yes 10, both No 15.
    # p_o = 35/50 = 0.7; rater 1 says Yes 25/50, rater 2 30/50: p_e = .5*.6 + .5*.4 = 0.5; kappa = .2/.5 = 0.4
    pairs = [("Y", "Y")] * 20 + [("Y", "N")] * 5 + [("N", "Y")] * 10 + [("N", "N")] * 15
    kappa = agreement.cohen_kappa(pairs)
    assert (kappa.statistic, kappa.observed, kappa.expected) == (COHEN, 0.7, 0.5)
    assert kappa.value == pytest.approx(0.4, abs=1e-12)


def test_fleiss_on_the_widely_reproduced_fourteen_rater_example():
    # 10 subjects, 14 raters, 5 categories (the example of Fleiss' kappa on Wikipedia): P = 0.378, P_e = 0.213,
    # kappa = 0.210
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    kappa = agreement.fleiss_kappa(table)
    assert kappa.statistic == FLEISS
    assert round(kappa.observed, 3) == 0.378 and round(kappa.expected, 3) == 0.213
    assert round(kappa.value, 3) == 0.210


def test_fleiss_by_hand_on_three_raters():
    # items: AAA, AAB, BBB. P_i = 1, (4+1-3)/6 = 1/3, 1: P = 7/9; p_A = 5/9, p_B = 4/9: P_e = 41/81;
    # kappa = (63/81 - 41/81) / (40/81) = 22/40 = 0.55
    assert agreement.fleiss_kappa([[3, 0], [2, 1], [0, 3]]).value == pytest.approx(0.55, abs=1e-12)
    # a row with one rater is left out; rows may have different totals (here 2 and 3)
    assert agreement.fleiss_kappa([[1, 0], [2, 0], [0, 3]]).value == pytest.approx(1.0)


def test_undefined_kappas_say_why_and_are_never_nan():
    one_category = agreement.cohen_kappa([("Y", "Y")] * 4)
    assert one_category.value is None and "one category" in one_category.undefined
    assert agreement.fleiss_kappa([[3, 0], [2, 0]]).value is None
    assert agreement.cohen_kappa([]).value is None and agreement.fleiss_kappa([[1, 0]]).value is None
    q = schema.Q_LEFT_SAFE
    rows = [Row(1, "0.mp4", False, ((q, "Yes"),)), Row(2, "1.mp4", False, ((q, "No"),))]
    [question] = agreement.figures(rows, questions=YES_NO)["questions"]  # no shared query
    assert question["kappa"] is None and question["statistic"] is None and question["shared_queries"] == 0
    assert "two participants" in question["undefined"]
    [question] = agreement.figures(rows[:1], questions=YES_NO)["questions"]  # one rater
    assert question["kappa"] is None and question["raters"] == 0  # raters of shared queries: none
    text = json.dumps(agreement.figures(rows, questions=YES_NO), allow_nan=False)  # never NaN in the page
    assert "NaN" not in text


def test_figures_per_participant_and_per_question():
    q = schema.Q_LEFT_SAFE
    rows = [Row(1, "0.mp4", False, ((q, "Yes"),), (2.0,), 3.0, 1), Row(2, "0.mp4", False, ((q, "Yes"),), (1.0,), 1.5),
            Row(1, "1.mp4", False, ((q, "No"),), (4.0,), 5.0), Row(2, "1.mp4", False, ((q, "No"),), (1.0,), 2.0, 2),
            Row(2, "2.mp4", True, (), (), 0.5), Row(1, "0.mp4", False, ((q, "No"),))]  # a repeat of (1, 0.mp4): ignored
    figures = agreement.figures(rows, questions=YES_NO, participants={1: {"of": 3, "consented_at": 100.0},
                                                                      3: {"of": 3}})
    one, two, three = figures["participants"]
    assert (one["user"], one["responses"], one["answered"], one["skipped"]) == (1, 2, 2, 0)
    assert (one["of"], one["repeats"]) == (3, 1)
    assert (one["seconds_median"], one["seconds_total"], one["answer_seconds_mean"]) == (4.0, 8.0, 3.0)
    assert one["answers"] == {q: {"Yes": 1, "No": 1}} and one["consented_at"] == 100.0
    assert (two["responses"], two["skipped"], two["repeats"], two["of"]) == (3, 1, 2, None)
    assert (three["responses"], three["of"]) == (0, 3)  # consented, nothing answered yet
    [question] = figures["questions"]
    assert question["distribution"] == {"Yes": 2, "No": 2}
    assert (question["statistic"], question["kappa"]) == (COHEN, 1.0)
    assert (question["shared_queries"], question["raters"]) == (2, 2)


def test_three_participants_get_fleiss_and_categories_nobody_chose_still_show():
    q = schema.Q_LEFT_SAFE
    answers = {"0.mp4": "YYY", "1.mp4": "YYN", "2.mp4": "NNN"}
    rows = [Row(user, query, False, ((q, {"Y": "Yes", "N": "No"}[a]),))
            for query, said in answers.items() for user, a in enumerate(said)]
    [question] = agreement.figures(rows, questions=[(q, ("Yes", "No", "Maybe"))])["questions"]
    assert question["statistic"] == FLEISS and question["kappa"] == pytest.approx(0.55)
    assert question["distribution"] == {"Yes": 5, "No": 4, "Maybe": 0}


def test_entries_and_examples_make_the_same_rows():
    import numpy as np

    entry = {"video": "3.mp4", "responses": [(schema.Q_LEFT_SAFE, "Yes", 1.5), (schema.Q_RIGHT_SAFE, "No", 2.0)],
             "repeat_count": 2, "total_time": 4.0}
    example = {schema.ANNOTATOR: {schema.USER_ID: np.int64(7)}, schema.QUERY_ID: b"3.mp4",
               schema.RESPONSE: {schema.SKIPPED: np.bool_(False), schema.TOTAL_TIME: np.float32(4.0),
                                 schema.REPEAT_COUNT: np.int32(2),
                                 schema.ANSWERS: {schema.QUESTION: np.array([schema.Q_LEFT_SAFE.encode(),
                                                                             schema.Q_RIGHT_SAFE.encode()]),
                                                  schema.ANSWER: np.array([b"Yes", b"No"]),
                                                  schema.SECONDS: np.array([1.5, 2.0], np.float32)}}}
    assert agreement.rows_from_examples([example]) == [agreement.row_from_entry(7, entry)]
    skipped = {"video": "4.mp4", "responses": schema.SKIPPED_ANSWER, "repeat_count": 0, "total_time": 1.0}
    assert agreement.row_from_entry(7, skipped).skipped


def test_the_figures_are_bounded():
    q = schema.Q_LEFT_SAFE
    rows = [Row(user, f"{i}.mp4", False, ((q, f"answer {user % 50}"),), (1.0,), 1.0)
            for user in range(1000) for i in range(3)]
    figures = agreement.figures(rows, questions=YES_NO)
    assert len(figures["participants"]) == agreement.MAX_PARTICIPANTS
    assert figures["participants_left_off"] == 1000 - agreement.MAX_PARTICIPANTS
    assert len(figures["questions"][0]["distribution"]) <= 2 + agreement.MAX_CATEGORIES
    assert len(json.dumps(figures)) < 200_000
    assert not any(isinstance(v, float) and math.isnan(v) for v in figures["questions"][0].values())
