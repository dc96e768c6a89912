"""Who answered what in an annotation directory, and how far the participants agree: the experimenter's figures.

    from dropj.loaders import EpisodeSource, agreement
    with EpisodeSource('OUT/dropj_annotations/dropj/1.0.0') as source:
        figures = agreement.of(source)           # reads only the answers' fields (`fields`), no frame, no TF
    figures['participants'][0]                   # user, answered, skipped, repeats, seconds per query, answers
    figures['questions'][0]['kappa']             # None when undefined, with the reason in 'undefined'
    agreement.figures(rows)                      # the same from `Row`s (`rows_from_examples`, `row_from_entry`)

`dropj annotate`'s dashboard (`/admin`) and `dropj stats` of an annotations directory both show `figures`.
It lives in the read room because both read the stored responses, the dashboard from the answers the server
committed (`row_from_entry`, the responses-file entries it keeps of what is on disk) and `dropj stats` through
the TF-free reader (`of`); the write room may not import that reader. A study's participant records (consent
time, their order of the queries) are written beside the store by the write room; the caller hands in what they
say (`participants`), so this module reads no file but the shards.

**Agreement** is counted per question of the method (DROPJ asks three: left safe, right safe, preference),
over the *shared* queries: those at least two participants answered that question of (a skip answers none;
DROPJ's preference question exists only where that participant said both cars were safe). Categories are the
question's answers.

* Exactly two participants answered the shared queries: **Cohen's kappa** (Cohen 1960, "A coefficient of
  agreement for nominal scales", Educ. Psychol. Meas. 20:37-46): with N shared queries and n_ab the queries
  rater 1 answered a and rater 2 answered b, p_o = sum_a n_aa / N (observed agreement), p_e = sum_a
  (n_a. / N) (n_.a / N) (agreement expected by chance from each rater's own marginals), and
  kappa = (p_o - p_e) / (1 - p_e).
* Three or more: **Fleiss' kappa** (Fleiss 1971, "Measuring nominal scale agreement among many raters",
  Psychol. Bull. 76(5):378-382): with n_ij the raters who put query i in category j and n_i = sum_j n_ij,
  P_i = (sum_j n_ij^2 - n_i) / (n_i (n_i - 1)) (the agreeing pairs of query i), P = mean_i P_i,
  p_j = sum_i n_ij / sum_i n_i, P_e = sum_j p_j^2, kappa = (P - P_e) / (1 - P_e). Fleiss' paper has the same
  n raters on every subject; a study's participants need not all answer every query, so n_i may differ per
  query (every query with n_i >= 2 counts, and p_j pools all ratings); with a constant n it is his formula.

Kappa is **undefined** (None, with the reason in `undefined`; never NaN) when fewer than two participants
answered any query of that question in common, or when chance agreement is 1 (every answer in one category:
nothing to agree beyond chance). Counts are exact fractions until the end, so p_e = 1 is found exactly.

Everything returned is JSON-ready and bounded: at most `MAX_PARTICIPANTS` participants (the most recently
active first would hide the rest; they are listed by id, and `participants_left_off` counts the others), and
the answers' categories of each question are those the method offers plus at most `MAX_CATEGORIES` others.
"""

from __future__ import annotations

import collections
import dataclasses
import statistics as stats
from fractions import Fraction
from typing import Any, Iterable, Mapping, Optional, Sequence

from dropj_datasets import schema

__all__ = ["MAX_PARTICIPANTS", "Row", "cohen_kappa", "fields", "figures", "fleiss_kappa", "of",
           "row_from_entry", "rows_from_examples"]

MAX_ITEMS = 100_000  # responses read at most (as `statistics.MAX_ITEMS`)
MAX_PARTICIPANTS = 200  # listed at most
MAX_CATEGORIES = 20  # answers outside the method's own, per question, counted at most
COHEN, FLEISS = "Cohen's kappa", "Fleiss' kappa"


@dataclasses.dataclass(frozen=True)
class Row:
    """One stored response: who, which query, skipped or the (question, answer) pairs with each answer's
    seconds (empty where the method stores none), the seconds from the load to the last answer or the skip,
    and the Repeat Video presses."""

    user: int
    query: str
    skipped: bool
    answers: tuple[tuple[str, str], ...] = ()
    seconds: tuple[float, ...] = ()
    total_time: float = 0.0
    repeat_count: int = 0


def _path(*keys: str) -> str:
    return "/".join(keys)


_FIELDS = (_path(schema.ANNOTATOR, schema.USER_ID), schema.QUERY_ID, _path(schema.RESPONSE, schema.SKIPPED),
           _path(schema.RESPONSE, schema.ANSWERS, schema.QUESTION),
           _path(schema.RESPONSE, schema.ANSWERS, schema.ANSWER),
           _path(schema.RESPONSE, schema.ANSWERS, schema.SECONDS), _path(schema.RESPONSE, schema.TOTAL_TIME),
           _path(schema.RESPONSE, schema.REPEAT_COUNT))


def fields(spec: schema.Spec) -> tuple[str, ...]:
    """The fields a `Row` is made of ('/'-paths), those `spec` has: never a frame or a clip."""
    names = {f.name for f in spec.fields()}
    return tuple(name for name in _FIELDS if name in names)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def rows_from_examples(examples: Iterable[dict]) -> list[Row]:
    """The `Row`s of decoded examples (nested dicts of numpy values, as `EpisodeSource.select` and `tfds.load`
    give them), the first `MAX_ITEMS`."""
    rows = []
    for example in examples:
        if len(rows) >= MAX_ITEMS:
            break
        response = example[schema.RESPONSE]
        skipped = bool(response[schema.SKIPPED])
        answers = response.get(schema.ANSWERS, {})
        pairs = () if skipped else tuple(zip((_text(q) for q in answers.get(schema.QUESTION, ())),
                                             (_text(a) for a in answers.get(schema.ANSWER, ()))))
        seconds = () if skipped else tuple(float(s) for s in answers.get(schema.SECONDS, ()))
        rows.append(Row(int(example[schema.ANNOTATOR][schema.USER_ID]), _text(example[schema.QUERY_ID]), skipped,
                        pairs, seconds, float(response[schema.TOTAL_TIME]), int(response[schema.REPEAT_COUNT])))
    return rows


def row_from_entry(user: int, entry: Mapping[str, Any]) -> Row:
    """The `Row` of a responses-file entry as the release's files hold it ({'video', 'responses': 'Skipped' or
    [(question, answer[, seconds])...], 'repeat_count', 'total_time'}), answered by `user`."""
    answers = entry["responses"]
    skipped = answers == schema.SKIPPED_ANSWER
    pairs = () if skipped else tuple((str(a[0]), str(a[1])) for a in answers)
    seconds = () if skipped else tuple(float(a[2]) for a in answers if len(a) > 2)
    return Row(int(user), str(entry["video"]), skipped, pairs, seconds, float(entry["total_time"]),
               int(entry["repeat_count"]))


def of(source: Any, *, questions: Optional[Sequence[tuple[str, Sequence[str]]]] = None,
       participants: Optional[Mapping[int, Mapping[str, Any]]] = None) -> dict:
    """`figures` of the responses in `source` (an `EpisodeSource` of an annotation directory), read through
    `select` (only `fields`: no clip is decoded)."""
    names = fields(source.spec)
    examples = (source.select(i, names) for i in range(min(len(source), MAX_ITEMS)))
    return figures(rows_from_examples(examples), questions=questions, participants=participants)


# --- the coefficients -------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Kappa:
    """A kappa with what it was made of: `value` None when undefined, and `undefined` then says why."""

    statistic: Optional[str]  # COHEN or FLEISS; None when fewer than two raters share a query
    value: Optional[float]
    observed: Optional[float] = None  # p_o (Cohen) or P-bar (Fleiss)
    expected: Optional[float] = None  # p_e or P_e-bar: agreement by chance
    undefined: Optional[str] = None


def _kappa(statistic: str, observed: Fraction, expected: Fraction) -> Kappa:
    if expected == 1:
        return Kappa(statistic, None, float(observed), 1.0,
                     "every answer is in one category: agreement by chance is 1, so kappa is undefined")
    return Kappa(statistic, float((observed - expected) / (1 - expected)), float(observed), float(expected))


def cohen_kappa(pairs: Sequence[tuple[Any, Any]]) -> Kappa:
    """Cohen's kappa of two raters' answers, one (rater 1's, rater 2's) pair per item (module docstring)."""
    n = len(pairs)
    if n == 0:
        return Kappa(COHEN, None, undefined="no query answered by both participants")
    first = collections.Counter(a for a, _ in pairs)
    second = collections.Counter(b for _, b in pairs)
    observed = Fraction(sum(a == b for a, b in pairs), n)
    expected = sum((Fraction(first[c], n) * Fraction(second[c], n) for c in first), Fraction(0))
    return _kappa(COHEN, observed, expected)


def fleiss_kappa(counts: Sequence[Sequence[int]]) -> Kappa:
    """Fleiss' kappa of a subjects x categories table of rater counts n_ij; rows with fewer than two raters are
    left out, and rows may have different totals (module docstring)."""
    rows = [list(map(int, row)) for row in counts if sum(row) >= 2]
    if not rows:
        return Kappa(FLEISS, None, undefined="no query answered by two or more participants")
    per_item = [Fraction(sum(c * c for c in row) - sum(row), sum(row) * (sum(row) - 1)) for row in rows]
    observed = sum(per_item, Fraction(0)) / len(rows)
    ratings = sum(sum(row) for row in rows)
    expected = sum((Fraction(sum(row[j] for row in rows), ratings) ** 2 for j in range(len(rows[0]))),
                   Fraction(0))
    return _kappa(FLEISS, observed, expected)


def question_kappa(answers: Mapping[str, Mapping[int, str]], categories: Sequence[str]) -> tuple[Kappa, int, int]:
    """(the kappa of one question, the shared queries, the participants who answered them) from
    {query: {user: answer}}: Cohen's for exactly two participants, Fleiss' for more."""
    shared = {query: by_user for query, by_user in answers.items() if len(by_user) >= 2}
    raters = sorted({user for by_user in shared.values() for user in by_user})
    if len(raters) < 2:
        return Kappa(None, None, undefined="no query was answered by two participants yet"), 0, len(raters)
    if len(raters) == 2:
        first, second = raters
        return cohen_kappa([(by_user[first], by_user[second]) for by_user in shared.values()]), len(shared), 2
    index = {category: j for j, category in enumerate(categories)}
    table = []
    for by_user in shared.values():
        row = [0] * len(categories)
        for answer in by_user.values():
            row[index[answer]] += 1
        table.append(row)
    return fleiss_kappa(table), len(shared), len(raters)


# --- the figures ------------------------------------------------------------------------------------------

def _round(value: Optional[float], digits: int = 4) -> Optional[float]:
    return None if value is None else round(value, digits)


def figures(rows: Iterable[Row], *, questions: Optional[Sequence[tuple[str, Sequence[str]]]] = None,
            participants: Optional[Mapping[int, Mapping[str, Any]]] = None) -> dict:
    """Per participant and per question, from the stored responses.

    `questions`: the method's (text, answers) in order (`study.Study.questions`), so categories nobody chose
    yet still show as 0; questions not listed follow in the order first met. `participants`: what a study's
    records say, {user: {'of': their queries, 'consented_at': epoch seconds, 'completed_at': ...}} (any
    key may be missing); participants with a record and no response yet are listed too.

    Returns {'responses', 'participants' (by id: user, responses, answered, skipped, of, repeats,
    seconds_median, seconds_mean, seconds_total, answer_seconds_mean, answers {question: {answer: n}},
    consented_at, completed_at), 'participants_total', 'participants_left_off', 'questions' (text,
    distribution {answer: n}, answered, shared_queries, raters, statistic, kappa, observed, expected,
    undefined)}. Each (user, query) counts once, its first response (the store keeps one)."""
    participants = dict(participants or {})
    seen: set[tuple[int, str]] = set()
    by_user: dict[int, list[Row]] = collections.defaultdict(list)
    for row in rows:
        if (row.user, row.query) in seen:
            continue
        seen.add((row.user, row.query))
        by_user[row.user].append(row)
    order = [text for text, _ in questions or ()]
    options = {text: [str(o) for o in answers] for text, answers in questions or ()}
    per_question: dict[str, dict[str, dict[int, str]]] = {}  # question -> query -> user -> answer
    for user_rows in by_user.values():
        for row in user_rows:
            for question, answer in row.answers:
                if question not in options:
                    order.append(question)
                    options[question] = []
                if answer not in options[question]:
                    if len(options[question]) >= len(dict(questions or ()).get(question, ())) + MAX_CATEGORIES:
                        continue
                    options[question].append(answer)
                per_question.setdefault(question, {}).setdefault(row.query, {})[row.user] = answer

    users = sorted(set(by_user) | set(participants))
    listed = [_participant(user, by_user.get(user, []), participants.get(user, {}), order)
              for user in users[:MAX_PARTICIPANTS]]
    return {"responses": len(seen), "participants": listed, "participants_total": len(users),
            "participants_left_off": max(len(users) - MAX_PARTICIPANTS, 0),
            "questions": [_question(text, options[text], per_question.get(text, {})) for text in order]}


def _participant(user: int, rows: list[Row], record: Mapping[str, Any], questions: list[str]) -> dict:
    times = [row.total_time for row in rows]
    seconds = [s for row in rows for s in row.seconds]
    answers: dict[str, collections.Counter] = {q: collections.Counter() for q in questions}
    for row in rows:
        for question, answer in row.answers:
            if question in answers:
                answers[question][answer] += 1
    skipped = sum(row.skipped for row in rows)
    of = record.get("of")
    return {"user": user, "responses": len(rows), "answered": len(rows) - skipped, "skipped": skipped,
            "of": int(of) if isinstance(of, int) else None, "repeats": sum(row.repeat_count for row in rows),
            "seconds_median": _round(stats.median(times)) if times else None,
            "seconds_mean": _round(stats.fmean(times)) if times else None,
            "seconds_total": _round(sum(times)) if times else 0.0,
            "answer_seconds_mean": _round(stats.fmean(seconds)) if seconds else None,
            "answers": {q: dict(c) for q, c in answers.items() if c},
            "consented_at": _epoch(record.get("consented_at")), "completed_at": _epoch(record.get("completed_at"))}


def _epoch(value: Any) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _question(text: str, categories: list[str], answers: dict[str, dict[int, str]]) -> dict:
    distribution = collections.Counter(a for by_user in answers.values() for a in by_user.values())
    kappa, shared, raters = question_kappa(answers, categories)
    return {"question": text, "distribution": {c: distribution.get(c, 0) for c in categories},
            "answered": sum(distribution.values()), "shared_queries": shared, "raters": raters,
            "statistic": kappa.statistic, "kappa": _round(kappa.value), "observed": _round(kappa.observed),
            "expected": _round(kappa.expected), "undefined": kappa.undefined}
