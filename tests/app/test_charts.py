"""`dropj_datasets.app.charts` and the statistics page's tables: each chart's labels and bars read back from its SVG
and checked against the data drawn; the tables' rows against the figures. `tests/app/test_browse.py` does the same
on built sample configs and sorts the tables in Chromium."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from dropj_datasets import schema
from dropj_datasets.app import charts, views

SVG = "{http://www.w3.org/2000/svg}"


# --- reading a chart back ---------------------------------------------------------------------------------

def _group(element: ET.Element, suffix: str) -> list[ET.Element]:
    """The <g> children whose id ends in `suffix` followed by a number (ids carry a per-chart prefix)."""
    return [g for g in element.iter(f"{SVG}g") if re.search(rf"-{suffix}_\d+$", g.get("id", ""))]


def _text(element: ET.Element) -> str:
    return "".join(element.itertext()).strip()


def _bar_tops(axes: ET.Element) -> list[tuple[float, float, float]]:
    """(left x, right x, top y) of each bar: the axes' filled rectangles in the bars' colour."""
    found = []
    for path in axes.iter(f"{SVG}path"):
        if path.get("fill") == charts.COLOUR:
            points = [tuple(map(float, p)) for p in re.findall(r"(-?[\d.]+) (-?[\d.]+)", path.get("d"))]
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            found.append((min(xs), max(xs), min(ys)))
    return found


def read_chart(svg: str) -> dict:
    """What a chart shows, read from its SVG text: its title (the aria-label), the note under it, the x tick
    labels in order, the y ticks, every text, and each bar's height in the y axis' units (from the ticks'
    positions), and keyed by the x tick label under its middle (a bar chart's: a histogram's ticks are a value
    axis)."""
    root = ET.fromstring(svg)
    [axes] = _group(root, "axes")
    [x_axis, y_axis] = [g for g in axes if re.search(r"-matplotlib\.axis_\d$", g.get("id", ""))]
    xticks = [(_text(t), float(t.find(f".//{SVG}use").get("x"))) for t in _group(x_axis, "xtick")]
    yticks = [(_text(t), float(t.find(f".//{SVG}use").get("y"))) for t in _group(y_axis, "ytick")]
    (v0, y0), (v1, y1) = [(float(v), y) for v, y in yticks[:2]]
    scale = (v1 - v0) / (y1 - y0)
    base = y0 - v0 / scale
    bars = [(left, right, round((top - base) * scale, 3)) for left, right, top in _bar_tops(axes)]
    labelled = {}
    for label, x in xticks:
        under = [h for left, right, h in bars if left < x < right]
        if len(under) == 1:
            labelled[label] = under[0]
    title = root.get("aria-label")
    notes = [_text(g) for g in axes if re.search(r"-text_\d+$", g.get("id", ""))]
    assert notes.count(title) == 1, notes
    return {"title": title, "note": next((n for n in notes if n.startswith("n = ")), ""),
            "on_bars": [n for n in notes if not n.startswith("n = ") and n != title],
            "xticks": [label for label, _ in xticks], "yticks": [label for label, _ in yticks],
            "bars": [h for _, _, h in bars], "labelled": labelled,
            "texts": [_text(t) for t in root.iter(f"{SVG}text")]}


# --- the charts ---------------------------------------------------------------------------------------------

def test_a_value_shared_by_all_is_one_bar_labelled_with_it():
    """An all-zero brake column (-0.0 too) is one bar "0" with its count: no bin edges "-0.5" or "0.5"."""
    chart = read_chart(charts.distribution([0.0] * 40 + [-0.0], "action: brake", unit="transitions"))
    assert chart["xticks"] == ["0"] and chart["labelled"] == {"0": 41} and chart["on_bars"] == ["41"]
    assert chart["title"] == "action: brake" and chart["note"] == "n = 41"
    assert not {"-0.5", "0.5", "-0"} & set(chart["texts"])


def test_discrete_values_are_labelled_as_themselves_in_ascending_order():
    returns = read_chart(charts.distribution([149.0, 7.0, 20.0, 149.0], "return per episode"))
    assert returns["xticks"] == ["7", "20", "149"] and returns["labelled"] == {"7": 1, "20": 1, "149": 2}
    flag = read_chart(charts.distribution([1, 0, 0], "'time_limit_truncated' steps per episode"))
    assert flag["labelled"] == {"0": 2, "1": 1}  # a flag set on one step of one episode: not "0.5"
    never = read_chart(charts.distribution([0, 0, 0], "'crash' steps per episode"))
    assert never["labelled"] == {"0": 3}
    presses = read_chart(charts.distribution([1, 0, 2, 3, 1, 1], "Repeat Video presses"))
    assert presses["xticks"] == ["0", "1", "2", "3"] and presses["labelled"] == {"0": 1, "1": 3, "2": 1, "3": 1}
    steer = read_chart(charts.distribution([-1.0, 0.0, 1.0, 1.0, 0.25], "action: steer"))
    assert steer["xticks"] == ["-1", "0", "0.25", "1"]
    one = read_chart(charts.distribution([2.4904096126556396] * 3, "seconds per query"))
    assert one["labelled"] == {"2.490409613": 3}  # one measured value: its bar, not a histogram of no width
    rewards = read_chart(charts.distribution([10.0, -1.0, 0.0], "reward per step", weights=[9, 9, 59]))
    assert rewards["labelled"] == {"-1": 9, "0": 59, "10": 9} and rewards["note"] == "n = 77"


def test_every_count_axis_has_integer_ticks_and_the_counts_on_the_bars():
    for chart in (charts.distribution([5] * 7 + [6] * 3, "t"), charts.bars({"a": 1, "b": 250}, "t"),
                  charts.distribution(list(range(500)), "t")):
        ticks = read_chart(chart)["yticks"]
        assert len(ticks) >= 2 and all(re.fullmatch(r"\d+", t) for t in ticks), ticks
    chart = read_chart(charts.bars({"Left": 3, "Right": 2}, "answers"))
    assert chart["on_bars"] == ["3", "2"] and chart["labelled"] == {"Left": 3, "Right": 2}


def test_categories_come_in_the_order_given_then_naturally_and_whole():
    answers = {"No/No": 1, "Yes/Yes/Equally": 4, "Yes/No": 2, "Yes/Yes/Left": 3, "Maybe": 1}
    order = views.answer_order(schema.spec_for("dropj_carracing", "preferences_dropj"), list(answers))
    assert order == ["Yes/Yes/Left", "Yes/Yes/Equally", "Yes/No", "No/No", "Maybe"]  # the GUI's order of options
    chart = read_chart(charts.bars(answers, "answers", order=order))
    assert chart["xticks"] == order and chart["labelled"] == answers  # "Equally" whole, never "Equall"
    users = read_chart(charts.bars({10: 1, 9: 2, 100: 3}, "responses per annotator"))
    assert users["xticks"] == ["9", "10", "100"]  # numbers ascending, not as text
    mjust = views.answer_order(schema.spec_for("dropj_obst_carracing", "chuckccar_preferences"),
                               ["Grass/Right", "Car/Left", "Default/Equally", "Default/Left"])
    assert mjust == ["Default/Left", "Default/Equally", "Grass/Right", "Car/Left"]


def test_many_values_make_a_histogram_whose_bars_hold_every_value():
    lengths = [12, 25, 40, 41, 41, 300, 999] + list(range(100, 130))
    chart = read_chart(charts.distribution(lengths, "transitions per episode"))
    assert sum(chart["bars"]) == len(lengths) and chart["note"].startswith(f"n = {len(lengths)}; ")
    assert re.search(r"\d+ bins of \d+", chart["note"])
    ticks = [float(t) for t in chart["xticks"]]
    steps = {b - a for a, b in zip(ticks, ticks[1:])}
    assert len(ticks) >= 3 and len(steps) == 1 and steps.pop() > 0  # a value axis: evenly spaced, ascending
    assert 12 - 34 <= ticks[0] and ticks[-1] <= 999 + 34  # within the bins (34 wide: 30 at most over 988)
    seconds = [1.5 + 0.37 * k for k in range(30)]  # measured: not labelled one by one
    chart = read_chart(charts.distribution(seconds, "seconds per query"))
    assert sum(chart["bars"]) == 30 and "bins of" in chart["note"] and "1.87" not in chart["texts"]


def test_values_that_are_not_finite_are_counted_and_said_never_drawn():
    chart = read_chart(charts.distribution([1.0, math.nan, math.inf, 2.0, -math.inf], "seconds per query"))
    assert chart["note"] == "n = 2; 3 not finite, not drawn" and chart["labelled"] == {"1": 1, "2": 1}
    assert not any("nan" in t.lower() or "inf" in t.lower() for t in chart["texts"])
    texts = [_text(t) for t in ET.fromstring(charts.distribution([math.nan] * 4, "t")).iter(f"{SVG}text")]
    assert sorted(texts) == ["no finite values: 4 not finite", "t"]
    texts = [_text(t) for t in ET.fromstring(charts.distribution([], "video kB")).iter(f"{SVG}text")]
    assert sorted(texts) == ["no values", "video kB"]
    assert sorted(_text(t) for t in ET.fromstring(charts.bars({}, "answers")).iter(f"{SVG}text")) == \
        ["answers", "no values"]


def test_categories_past_the_most_drawn_are_said():
    counts = {f"user {k}": 1 for k in range(charts.MAX_BARS + 5)}
    chart = read_chart(charts.bars(counts, "responses per annotator", order=list(counts)))
    assert len(chart["xticks"]) == charts.MAX_BARS
    assert chart["note"] == f"n = {len(counts)}; 5 more, 5 in all, not drawn"


def test_the_same_data_gives_the_same_bytes_and_nothing_the_page_refuses():
    """Byte for byte the same; no inline style (the served page's CSP refuses it), nothing fetched, no date; and
    two charts on one page share no id."""
    one, again = charts.distribution([3, 1, 2], "a"), charts.distribution([3, 1, 2], "a")
    other = charts.distribution([3, 1, 2, 2], "b")
    assert one == again and one.startswith("<svg") and one.endswith("</svg>")
    for svg in (one, other, charts.distribution(list(range(50)), "c"), charts.distribution([], "d")):
        assert "style=" not in svg and "<style" not in svg and "<metadata" not in svg
        assert all(ref.startswith("#") for ref in re.findall(r'href="([^"]*)"', svg)) and "src=" not in svg
        ids = re.findall(r' id="([^"]+)"', svg)
        assert len(ids) == len(set(ids))
        for ref in re.findall(r'(?:href="#|url\(#)([^")]+)', svg):
            assert ref in ids  # every reference resolves inside the chart
    assert not set(re.findall(r' id="([^"]+)"', one)) & set(re.findall(r' id="([^"]+)"', other))


def test_labels_are_numbers_as_written():
    assert [charts.number(v) for v in (149.0, -0.0, 0.25, 7, 1e20, 2 / 3)] == \
        ["149", "0", "0.25", "7", "1e+20", "0.6666666667"]


# --- the page's tables --------------------------------------------------------------------------------------

class Tables(HTMLParser):
    """Every <table> of a page as rows of cells: (text, data-sort or None, the href of a link in it or None)."""

    def __init__(self, page: str):
        super().__init__()
        self.tables: list[list[list[tuple[str, str | None, str | None]]]] = []
        self._cell = None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = [[], attrs.get("data-sort"), None]
        elif tag == "a" and self._cell is not None:
            self._cell[2] = attrs.get("href")

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[0].append(data)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append(("".join(self._cell[0]).strip(), self._cell[1], self._cell[2]))
            self._cell = None

    def named(self, first: str) -> list[dict]:
        """The rows of the one table whose first header is `first`, as {header: (text, sort, href)}."""
        [table] = [t for t in self.tables if t and t[0][0][0] == first]
        return [dict(zip((h[0] for h in table[0]), row)) for row in table[1:]]


def _built(dataset: str, config: str, count: int) -> views.Built:
    """A config as `report` sees it (its name, spec and item count; `report` reads no file)."""
    return views.Built(f"{dataset}/{config}", None, schema.spec_for(dataset, config), Path("unused"), dataset,
                       config, count)


def test_the_response_tables_are_the_figures_per_participant_and_per_response():
    """Two participants; a response whose seconds were not recorded shows so (never "nan"); skips and answers."""
    stats = {"kind": "preferences", "items": 5, "skipped": 1, "answers": {"Left": 2, "Right": 1, "Equally": 1},
             "labels": {0.0: 1, 0.5: 1, 1.0: 2}, "total_time": [2.0, math.nan, 4.0, 6.0, 3.0],
             "repeat_count": [0, 2, 1, 0, 4], "annotators": {7: 3, 12: 2}, "user_per_response": [12, 7, 7, 12, 7],
             "answer_per_response": ["Left", None, "Right", "Equally", "Left"]}
    page = views.report(_built("dropj_carracing", "preferences_drope", 5), stats, link="/d/x/y/")
    assert not re.search(r"\bnan\b", page, re.IGNORECASE)
    tables = Tables(page)
    people = {row["participant"][0]: row for row in tables.named("participant")}
    assert list(people) == ["user 7", "user 12"]
    assert [people["user 7"][c][0] for c in ("responses", "skipped", "answers", "Repeat Video presses")] == \
        ["3", "1", "Left: 1, Right: 1", "7"]
    assert people["user 7"]["seconds per query: median (mean)"][0] == "3.5 (3.5)"  # of the two recorded
    assert people["user 12"]["answers"][0] == "Left: 1, Equally: 1"  # the method's order: Left, Right, Equally
    responses = tables.named("response")
    assert [(r["response"][0], r["response"][2], r["participant"][0], r["answers"][0], r["seconds"][0],
             r["Repeat Video presses"][0]) for r in responses] == [
        ("0", "/d/x/y/item/0", "user 12", "Left", "2.00", "0"),
        ("1", "/d/x/y/item/1", "user 7", "skipped", "not recorded", "2"),
        ("2", "/d/x/y/item/2", "user 7", "Right", "4.00", "1"),
        ("3", "/d/x/y/item/3", "user 12", "Equally", "6.00", "0"),
        ("4", "/d/x/y/item/4", "user 7", "Left", "3.00", "4")]
    assert responses[1]["seconds"][1] == ""  # sorts last
    assert "This build holds 5 responses: 4 answered, 1 skipped, from 2 participants." in page
    assert "Release config: DROPe: user 27" in page  # the release's words, said apart from the counts


def test_a_table_past_the_most_rows_says_how_many_it_lists():
    n = views.MAX_ROWS + 3
    stats = {"kind": "queries", "items": n, "video_bytes": [1000 + k for k in range(n)]}
    page = views.report(_built("dropj_carracing", "queries", n), stats)
    assert f"<h2>Queries (the first {views.MAX_ROWS:,} of {n:,})</h2>" in page
    rows = Tables(page).named("query")
    assert len(rows) == views.MAX_ROWS and rows[1]["video kB"][:2] == ("1.0", "1.001") and rows[1]["query"][2] is None


@pytest.mark.parametrize("title", ["<b>x</b>", 'say "hi" & go', "cost $x$"])
def test_titles_and_labels_are_text_not_markup(title):
    """Neither HTML nor matplotlib's mathtext: an answer holding '$' is shown as written."""
    svg = charts.bars({"<i>": 1, "a$b$c": 2}, title)
    root = ET.fromstring(svg)
    assert root.get("aria-label") == title
    assert {title, "<i>", "a$b$c", "n = 3"} <= {_text(t) for t in root.iter(f"{SVG}text")}
