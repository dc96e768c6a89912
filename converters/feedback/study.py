"""The study's questions, asked exactly as its GUIs asked them, and the responses they make.

A `Study` walks one query: which question comes next given the answers so
far, which buttons it offers (and which is preselected), and, once the query
is answered or skipped, the responses-file entry the authors' GUI would have
written, checked as strictly as a release file (`preferences.validate_response`)
and labelled by the paper's rule. What the browser sends is untrusted: every
answer out of order, unknown, or timed impossibly is refused with one message.

    study = Study.for_method('dropj')
    study.next_question([])                       # Question('Does the left car stay safe?', ('Yes', 'No'))
    study.next_question([('Does the left car stay safe?', 'Yes'),
                         ('Does the right car stay safe?', 'No')])   # None: answered
    entry = study.entry('17.mp4', answers, seconds=[6.1, 1.2], total_time=7.4, repeat_count=1)

A study file (`load_study`, `StudyFile`; `docs/study.toml` is the example) declares one study for
`dropj annotate --study`: consent, instructions, practice and study queries, the method, each
participant's seeded order, the participants and a completion code. `definitions` gives what each
answer means (`MEANINGS`, taken from the release), shown with the instructions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from dropj.converters.release import preferences
from dropj_datasets import schema
from dropj_datasets.schema import DataError, FeedbackSpec

# `dropj annotate --method` -> the schema's feedback method, and the release config whose questions it asks.
METHODS = {"drop": "preferences_drop", "drope": "preferences_drope", "dropj": "preferences_dropj",
           "mjust": "chuckccar_preferences"}
MAX_SECONDS = 24 * 3600.0  # one query; longer is a clock error, not an answer
MAX_REPEATS = 10_000
SUM_TOLERANCE = 1e-6  # seconds: a browser's differences of one clock may add up to a rounding more than the total


@dataclasses.dataclass(frozen=True)
class Question:
    """One question as the GUI showed it: its text, its buttons in order, and the preselected one."""

    text: str
    options: tuple[str, ...]
    preselected: Optional[str] = None


class Study:
    """The question flow and the responses of one feedback method (`spec.method`)."""

    def __init__(self, spec: FeedbackSpec, justifications: Optional[tuple[str, ...]] = None):
        self.spec = spec
        self.justifications = justifications or spec.justifications
        preference = (schema.A_LEFT, schema.A_RIGHT) + ((schema.A_EQUALLY,) if spec.method != "DROP" else ())
        if spec.method == "DROPJ":
            yes_no = (schema.A_YES, schema.A_NO)
            self._questions = {schema.Q_LEFT_SAFE: Question(schema.Q_LEFT_SAFE, yes_no),
                               schema.Q_RIGHT_SAFE: Question(schema.Q_RIGHT_SAFE, yes_no),
                               schema.Q_PREFER: Question(schema.Q_PREFER, preference)}
        elif spec.method == "multi-justification":
            # The obstacle GUI listed Left, Equally, Right and preselected 'Default' for every query.
            self._questions = {
                schema.Q_JUSTIFICATION: Question(schema.Q_JUSTIFICATION, self.justifications, "Default"),
                schema.Q_PREFERENCE: Question(schema.Q_PREFERENCE, (schema.A_LEFT, schema.A_EQUALLY, schema.A_RIGHT))}
        else:
            self._questions = {schema.Q_PREFER: Question(schema.Q_PREFER, preference)}

    @classmethod
    def for_method(cls, method: str) -> "Study":
        """'drop', 'drope', 'dropj' or 'mjust' (with Car: the chuckhole-and-cars study)."""
        if method not in METHODS:
            raise ValueError(f"unknown method {str(method)[:20]!r}; choose one of {', '.join(METHODS)}")
        dataset = "dropj_obst_carracing" if method == "mjust" else "dropj_carracing"
        return cls(schema.spec_for(dataset, METHODS[method]))

    @property
    def questions(self) -> tuple[Question, ...]:
        """Every question this method may ask, in the order it asks them."""
        return tuple(self._questions.values())

    @property
    def with_seconds(self) -> bool:
        """The Car Racing GUI stored (question, answer, seconds); the obstacle GUI (question, answer)."""
        return self.spec.answers_have_seconds

    def next_question(self, answers: Sequence[tuple[str, str]]) -> Optional[Question]:
        """The question to ask after `answers` (question, answer pairs in order), or None when done.

        Raises `DataError` if `answers` is not a path the GUI could have taken.
        """
        self._check(answers)
        order = preferences.questions_in_order(self.spec, [tuple(a) for a in answers])
        return self._questions[order[len(answers)]] if len(answers) < len(order) else None

    def _check(self, answers: Sequence[tuple[str, str]]) -> None:
        for k, item in enumerate(answers):
            if not (isinstance(item, (tuple, list)) and len(item) == 2 and all(type(x) is str for x in item)):
                raise DataError(f"answer {k}: expected [question, answer], got {schema.describe(item)}")
            order = preferences.questions_in_order(self.spec, [tuple(a) for a in answers[:k + 1]])
            question, answer = item
            if k >= len(order) or question != order[k]:
                expected = order[k] if k < len(order) else "no further question"
                raise DataError(f"answer {k}: question {schema.describe(question, 60)} out of order "
                                f"(expected {expected!r})")
            if answer not in self._questions[question].options:
                raise DataError(f"answer {k}: {schema.describe(answer, 40)} is not an answer to {question!r} "
                                f"(one of {list(self._questions[question].options)})")

    def entry(self, video: str, answers: Sequence[tuple[str, str]], *, seconds: Sequence[float],
              total_time: float, repeat_count: int) -> dict:
        """The responses-file entry of an answered query; `seconds[k]` is the time before answer k."""
        self._check(answers)
        if self.next_question(answers) is not None:
            raise DataError(f"query {schema.describe(video, 40)}: {len(answers)} answers, the query is not finished")
        if len(seconds) != len(answers):
            raise DataError(f"query {schema.describe(video, 40)}: {len(seconds)} times for {len(answers)} answers")
        _check_times(video, seconds, total_time, repeat_count)
        items = [(q, a, float(s)) if self.with_seconds else (q, a) for (q, a), s in zip(answers, seconds)]
        return self._checked({"video": video, "responses": items, "repeat_count": int(repeat_count),
                              "total_time": float(total_time)})

    def skipped(self, video: str, *, total_time: float, repeat_count: int) -> dict:
        """The entry of a skipped query: 'Skipped', and the time to the Skip press."""
        _check_times(video, [], total_time, repeat_count)
        return self._checked({"video": video, "responses": schema.SKIPPED_ANSWER, "repeat_count": int(repeat_count),
                              "total_time": float(total_time)})

    def _checked(self, entry: dict) -> dict:
        """As strict as a release file, and labelled by the paper's rule (an unlabelable answer is refused)."""
        response = preferences.validate_response(entry, self.spec, file="annotation", index=0)
        if response.answers is not None:
            preferences.label_for(self.spec.method, response.answers, preferences.LabelWeights.of(self.spec))
        return entry


def _check_times(video: str, seconds: Sequence[float], total_time: float, repeat_count: int) -> None:
    where = f"query {schema.describe(video, 40)}"
    if type(repeat_count) is not int or not 0 <= repeat_count <= MAX_REPEATS:
        raise DataError(f"{where}: repeat_count must be an int in [0, {MAX_REPEATS}], got "
                        f"{schema.describe(repeat_count)}")
    values = list(seconds) + [total_time]
    # The range first: an int of 400 digits compares with a float exactly but overflows `float()` and
    # `math.isfinite`; NaN fails every comparison, infinity the upper bound.
    if not all(type(v) in (int, float) and 0 <= v <= MAX_SECONDS for v in values):
        raise DataError(f"{where}: times must be finite seconds in [0, {MAX_SECONDS:.0f}], got "
                        f"{[schema.describe(v) for v in values][:6]}")
    if math.fsum(seconds) > total_time + SUM_TOLERANCE:
        raise DataError(f"{where}: the answers' times add up to {math.fsum(seconds):.3f} s, more than the total "
                        f"{total_time:.3f} s")


# --- what each answer means: shown with the study's instructions ---------------------------------------------
# Taken from the release, not invented: "safe" is the environment's own rule (DATA_FORMATS.md 8.1: a step off
# the road or out of bounds is a crash, reward -1), the preference is what the label means (5.3: the probability
# that the left clip is preferred; Equally 0.5), and the justifications are the obstacle GUI's (5.2, 8.2: one per
# query, for the preference as a whole; chuckholes are orange and slow a car, the other cars are blue).
_SAFE = {schema.A_YES: "the car stays on the road for the whole clip: it never drives onto the grass or off the track",
         schema.A_NO: "at some point in the clip the car leaves the road (onto the grass) or the track"}
_PREFER = {schema.A_LEFT: "the left clip shows the better driving",
           schema.A_RIGHT: "the right clip shows the better driving",
           schema.A_EQUALLY: "neither clip is better than the other"}
MEANINGS: dict[str, dict[str, str]] = {
    schema.Q_LEFT_SAFE: _SAFE,
    schema.Q_RIGHT_SAFE: _SAFE,
    schema.Q_PREFER: _PREFER,
    schema.Q_PREFERENCE: _PREFER,
    schema.Q_JUSTIFICATION: {
        "Default": "no particular reason (preselected: leaving it means this)",
        "Grass": "the reason for your preference: a car drives onto the grass",
        "Chuckhole": "the reason for your preference: a car hits a chuckhole (an orange circle that slows it down)",
        "Car": "the reason for your preference: a car hits another car (the other cars are blue)"},
}
_WHEN = {schema.Q_PREFER: "asked only when both cars stay safe"}


def definitions(study: Study) -> list[dict]:
    """The method's questions with what each answer means, in the order they are asked (for the instructions)."""
    out = []
    for question in study.questions:
        note = _WHEN.get(question.text, "") if study.spec.method == "DROPJ" else ""
        out.append({"question": question.text, "note": note,
                    "answers": [[answer, MEANINGS[question.text][answer]] for answer in question.options]})
    return out


# --- a study is a file: `dropj annotate --study study.toml` ----------------------------------------------------
MAX_STUDY_BYTES = 1 << 20  # a study file is text a person writes
MAX_TEXT = 20_000  # characters of the consent or the instructions
MAX_IDS = 100_000  # queries or participants listed
ORDERS = ("shuffled", "fixed")


@dataclasses.dataclass(frozen=True)
class StudyFile:
    """A study as its TOML file declares it (`load`); `docs/study.toml` is the worked example.

    `order_for(user, queries)` is that participant's order of the study's queries: "fixed" keeps the
    queries' own order; "shuffled" sorts them by SHA-256 of (seed, user, query id), so one (seed, user)
    gives the same order on every machine and Python or numpy version, and adding a query never moves
    the others. Practice queries are answered through the same questions but never stored with the
    study's answers (`annotate.py` keeps them in the participant's record only).
    """

    path: str
    title: str
    method: str
    queries: str
    consent: str
    instructions: str
    data_dir: Optional[str] = None
    query_ids: Optional[tuple[str, ...]] = None  # None: every query of the set that is not a practice one
    practice: tuple[str, ...] = ()
    order: str = "shuffled"
    seed: int = 0
    participants: Optional[frozenset[int]] = None  # None: any id
    completion_code: Optional[str] = None
    play_through: bool = True  # answers unlock once the clips have played to the end (the server holds it too)
    review: bool = True  # after the last question: the answers again, Back or Submit
    sha256: str = ""  # of the file's bytes: each participant's record names the version they saw

    def study_queries(self, available: Sequence[str]) -> list[str]:
        """The study's query ids among `available` (the query set's, in its order); refuses unknown ones."""
        errors = [f"key {key!r}: query {q!r} is not in {self.queries} (it has {len(available)}: "
                  f"{', '.join(list(available)[:3])}, ...)"
                  for key, ids in (("practice", self.practice), ("query_ids", self.query_ids or ()))
                  for q in ids if q not in set(available)][:5]
        overlap = sorted(set(self.practice) & set(self.query_ids or ()))
        if overlap:
            errors.append(f"key 'practice': {overlap[:5]} also in 'query_ids' (a practice answer is never a study "
                          "answer)")
        if errors:
            raise DataError(f"{self.path}: " + "; ".join(errors))
        chosen = set(self.query_ids) if self.query_ids is not None else set(available) - set(self.practice)
        return [q for q in available if q in chosen]

    def order_for(self, user: int, queries: Sequence[str]) -> list[str]:
        if self.order == "fixed":
            return list(queries)
        return sorted(queries, key=lambda q: hashlib.sha256(f"{self.seed}:{user}:{q}".encode()).hexdigest())

    def admits(self, user: int) -> bool:
        return self.participants is None or user in self.participants


def _text(limit: int) -> Callable[[Any], Optional[str]]:
    def check(value: Any) -> Optional[str]:
        if type(value) is not str or not value.strip() or len(value) > limit:
            return f"a non-empty string of at most {limit:,} characters"
        return None
    return check


def _ids(kind: type, limit: int = MAX_IDS) -> Callable[[Any], Optional[str]]:
    what = "query ids such as \"0.mp4\"" if kind is str else "participant ids, ints in [0, 2**31)"
    def check(value: Any) -> Optional[str]:
        if (not isinstance(value, list) or len(value) > limit or len(set(map(repr, value))) != len(value)
                or not all(type(v) is kind and (0 < len(v) <= 200 if kind is str else 0 <= v < 2**31) for v in value)):
            return f"a list of at most {limit:,} distinct {what}"
        return None
    return check


def _choice(options: Sequence[str]) -> Callable[[Any], Optional[str]]:
    return lambda value: None if value in options and type(value) is str else f"one of {list(options)}"


# key -> (required, the check: None when good, else what was expected)
_KEYS: dict[str, tuple[bool, Callable[[Any], Optional[str]]]] = {
    "title": (True, _text(200)),
    "method": (True, _choice(list(METHODS))),
    "queries": (True, _text(500)),
    "data_dir": (False, _text(1000)),
    "consent": (True, _text(MAX_TEXT)),
    "instructions": (True, _text(MAX_TEXT)),
    "query_ids": (False, _ids(str)),
    "practice": (False, _ids(str, 20)),
    "order": (False, _choice(ORDERS)),
    "seed": (False, lambda v: None if type(v) is int and 0 <= v < 2**63 else "an int in [0, 2**63)"),
    "participants": (False, _ids(int)),
    "completion_code": (False, lambda v: None if type(v) is str and 0 < len(v) <= 100 and v.isprintable()
                        else "a printable string of 1 to 100 characters"),
    "play_through": (False, lambda v: None if type(v) is bool else "true or false"),
    "review": (False, lambda v: None if type(v) is bool else "true or false"),
}


def load_study(path: str | os.PathLike) -> StudyFile:
    """Reads and checks a study file; raises one `DataError` naming the file and every bad key at once
    (expected vs got). Relative `queries` directories and `data_dir` are taken from the file's folder."""
    import tomllib

    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_STUDY_BYTES + 1)
    except OSError as exc:
        raise DataError(f"{path}: cannot read the study file ({exc.strerror or schema.one_line(exc)})") from None
    if len(raw) > MAX_STUDY_BYTES:
        raise DataError(f"{path}: larger than {MAX_STUDY_BYTES:,} bytes; a study file is a page of text")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DataError(f"{path}: not a TOML file ({schema.one_line(exc, 200, typed=False)})") from None
    errors = [f"unknown key {schema.describe(key, 40)} (expected one of {', '.join(_KEYS)})"
              for key in data if key not in _KEYS][:5]
    for key, (required, check) in _KEYS.items():
        if key not in data:
            if required:
                errors.append(f"key {key!r}: missing (expected {check(None)})")
        elif (expected := check(data[key])) is not None:
            errors.append(f"key {key!r}: expected {expected}, got {schema.describe(data[key], 40)}")
    if errors:
        raise DataError(f"{path}: " + "; ".join(errors))
    here = path.resolve().parent

    def beside(value: str) -> str:  # a directory given relative to the study file
        return os.path.normpath(here / value) if not os.path.isabs(value) else value

    queries = data["queries"]
    if queries.startswith((".", "/")) or os.path.isdir(here / queries):
        queries = beside(queries)
    return StudyFile(
        path=str(path), title=data["title"], method=data["method"], queries=queries, consent=data["consent"],
        instructions=data["instructions"],
        data_dir=beside(data["data_dir"]) if "data_dir" in data else None,
        query_ids=tuple(data["query_ids"]) if "query_ids" in data else None,
        practice=tuple(data.get("practice", ())), order=data.get("order", "shuffled"), seed=data.get("seed", 0),
        participants=frozenset(data["participants"]) if "participants" in data else None,
        completion_code=data.get("completion_code"), play_through=data.get("play_through", True),
        review=data.get("review", True), sha256=hashlib.sha256(raw).hexdigest())
