"""`dropj stats` of an annotation directory that `dropj annotate --study` wrote: the page's per-participant rows and
kappas are those of the answers given, computed here directly with `dropj.loaders.agreement`.

Two scripted participants answer through the real server (HTTP, as the page does), practice included; then
`dropj stats` runs as a subprocess on the directory. Only the tables' content is read (the charts above them
may change their look).
"""

from __future__ import annotations

import collections
import html.parser
import re
import subprocess
import sys

import pytest

import factory
from dropj.converters.feedback import annotations
from dropj.loaders import agreement
from dropj_datasets import schema

from factory.web import App
from tests.app.web.test_annotate_web import _request, queries_dir, study_copy  # noqa: F401

pytestmark = pytest.mark.slow

QUERIES = ("1.mp4", "2.mp4", "3.mp4", "4.mp4")
# user -> query -> (left safe, right safe[, preference]), or None for a skip; and their Repeat Video presses
ANSWERS = {
    31: {"1.mp4": ("Yes", "Yes", "Left"), "2.mp4": ("No", "No"), "3.mp4": ("Yes", "No"),
         "4.mp4": ("Yes", "Yes", "Right")},
    32: {"1.mp4": ("Yes", "Yes", "Left"), "2.mp4": ("No", "Yes"), "3.mp4": ("Yes", "No"), "4.mp4": None},
}
REPEATS = {31: {}, 32: {"1.mp4": 2}}
QUESTIONS = (schema.Q_LEFT_SAFE, schema.Q_RIGHT_SAFE, schema.Q_PREFER)


def _participate(base: str, user: int) -> None:
    """One participant through the study server's API: consent, the practice query, then every query."""
    _, session = _request("POST", base + "/api/session", {"user": str(user)})
    sid, csrf = session["session"], {"x-dropj-csrf": session["csrf"]}
    assert _request("POST", base + "/api/consent", {"session": sid}, csrf)[0] == 200
    while True:
        _, query = _request("GET", base + f"/api/query?session={sid}")
        if query["done"]:
            return
        video = query["query_id"]
        given = ("Yes", "Yes", "Right") if query["practice"] else ANSWERS[user][video]  # practice: never counted
        body = {"session": sid, "query_id": video, "repeat_count": REPEATS[user].get(video, 0)}
        if given is None:
            body.update(skip=True, total_time=1.0)
        else:
            body.update(answers=[list(pair) for pair in zip(QUESTIONS, given)], seconds=[0.5] * len(given),
                        total_time=0.5 * len(given) + 0.1)
        status, reply = _request("POST", base + "/api/answer", body, csrf)
        assert status == 200, reply


class _Tables(html.parser.HTMLParser):
    """Every <table> of a page as rows of cell texts (th and td alike)."""

    def __init__(self):
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self.tables and self.tables[-1]:
            self.tables[-1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _rows(tables, first_column: str) -> list[dict]:
    """The rows of the table whose first column's header starts with `first_column`, as {header: cell}."""
    [table] = [t for t in tables if t and t[0] and t[0][0].lower().startswith(first_column)]
    return [dict(zip(table[0], row)) for row in table[1:]]


def _column(row: dict, word: str) -> str:
    [value] = [v for h, v in row.items() if h.lower().startswith(word)]
    return value


def test_dropj_stats_of_a_study_shows_each_participant_and_the_kappas_of_their_answers(queries_dir, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    study = study_copy(tmp_path, play_through="false", query_ids='["1.mp4", "2.mp4", "3.mp4", "4.mp4"]')
    app = App("annotate", "--study", study, "--data_dir", str(queries_dir), "--out", str(out))
    try:
        for user in ANSWERS:
            _participate(app.base, user)
    finally:
        app.stop()
    directory = annotations.annotation_dir(out, "dropj")
    report = tmp_path / "report.html"
    done = subprocess.run([sys.executable, "-m", "dropj_datasets.app", "stats", str(directory), "--out", str(report)],
                          capture_output=True, text=True, cwd=factory.REPO, timeout=300)
    assert done.returncode == 0 and "wrote " in done.stdout, done.stdout + done.stderr[-3000:]
    parser = _Tables()
    parser.feed(report.read_text())

    people = {row[next(iter(row))]: row for row in _rows(parser.tables, "participant")}
    assert set(people) == {"user 31", "user 32"}
    for user, given in ANSWERS.items():
        row = people[f"user {user}"]
        skipped = sum(answer is None for answer in given.values())
        assert _column(row, "progress") == f"{len(QUERIES)} of {len(QUERIES)}"  # the practice query is not one
        assert int(_column(row, "answered")) == len(given) - skipped
        assert int(_column(row, "skipped")) == skipped
        assert int(_column(row, "repeats")) == sum(REPEATS[user].values())

    # Cohen's kappa of the two participants, per question, over the queries both answered it on
    expected = {}
    for k, question in enumerate(QUESTIONS):
        pairs = [(ANSWERS[31][q][k], ANSWERS[32][q][k]) for q in QUERIES
                 if ANSWERS[31][q] and ANSWERS[32][q] and len(ANSWERS[31][q]) > k and len(ANSWERS[32][q]) > k]
        expected[question] = agreement.cohen_kappa(pairs).value
    # by hand: left safe (Y, N, Y) both: 1. Right safe (Y, N, N) vs (Y, Y, N): p_o = 2/3, p_e = 4/9, (2/9)/(5/9) = 0.4.
    # The preference was shared on 1.mp4 only, both Left: chance agreement 1, undefined.
    assert expected == {schema.Q_LEFT_SAFE: 1.0, schema.Q_RIGHT_SAFE: pytest.approx(0.4), schema.Q_PREFER: None}
    questions = {row[next(iter(row))]: row for row in _rows(parser.tables, "question")}
    kappas = {question: _column(row, "kappa") for question, row in questions.items()}
    for k, question in enumerate(QUESTIONS):  # the answers given, the practice's (Yes, Yes, Right) not among them
        given = collections.Counter(a[k] for by_query in ANSWERS.values() for a in by_query.values()
                                    if a and len(a) > k)
        shown = {answer: int(n) for answer, n in re.findall(r"(\w+): (\d+)", _column(questions[question], "answers"))}
        assert {answer: n for answer, n in shown.items() if n} == dict(given), (question, shown)
    assert set(kappas) == set(QUESTIONS)
    for question, value in expected.items():
        if value is None:
            assert kappas[question].startswith("undefined"), kappas
        else:
            assert float(kappas[question]) == pytest.approx(value, abs=5e-4), kappas
