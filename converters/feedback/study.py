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
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional, Sequence

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
