"""Human feedback: query segments + responses -> preference examples with labels, and back.

A preference example is one entry of a responses file, joined with the query
it answers (`data.pkl[entry['video']]`), plus the training label that the
paper's rule for the feedback method gives (DATA_FORMATS.md 5.3). The label
rules live in `label_for`, in one place.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import re
from typing import Any, Iterable, Iterator, Mapping, Optional

import numpy as np

from dropj.converters.release import kinds, sources
from dropj.converters.store import legacy_pickle
from dropj.converters.release.kinds import LegacyFile
from dropj_datasets import schema
from dropj_datasets.schema import DataError, EnvSpec, FeedbackSpec, QuerySpec, describe

_VIDEO = re.compile(r"^(\d{1,9})\.mp4$")  # the index is stored as int32
_INT32_MAX = 2**31 - 1
MAX_VIDEO_BYTES = 64 << 20  # a release video is 1000x500, 8 s: about 100 kB


@dataclasses.dataclass(frozen=True)
class LabelWeights:
    """The weights of the label rules (builder-config parameters)."""

    w_s: float = 1.0
    w_def: float = 0.75
    just_weights: tuple[tuple[str, float], ...] = ()

    @classmethod
    def of(cls, spec: FeedbackSpec) -> "LabelWeights":
        return cls(spec.w_s, spec.w_def, spec.just_weights)

    def to_metadata(self) -> dict:
        return {"w_s": self.w_s, "w_def": self.w_def, "just_weights": dict(self.just_weights)}


class UnlabelableAnswer(DataError):
    """An answer the method's rule cannot turn into a label (say 'Equally' under DROP)."""


def label_for(method: str, answers: list[tuple], weights: LabelWeights) -> float:
    """P(left clip preferred) from the answers, by the paper's rule for `method`.

    >>> label_for('DROPJ', [('Does the left car stay safe?', 'Yes', 1.0),
    ...                     ('Does the right car stay safe?', 'No', 1.0)], LabelWeights())
    1.0
    """
    given = {question: answer for question, answer, *_ in answers}
    if method in ("DROP", "DROPe"):
        preference = given.get(schema.Q_PREFER)
        if preference == schema.A_LEFT:
            return 1.0
        if preference == schema.A_RIGHT:
            return 0.0
        if preference == schema.A_EQUALLY and method == "DROPe":
            return 0.5
        raise UnlabelableAnswer(f"answer {preference!r} has no label under {method}")
    if method == "DROPJ":
        left, right = given.get(schema.Q_LEFT_SAFE), given.get(schema.Q_RIGHT_SAFE)
        if (left, right) == (schema.A_YES, schema.A_NO):
            return weights.w_s
        if (left, right) == (schema.A_NO, schema.A_YES):
            return 1.0 - weights.w_s
        if (left, right) == (schema.A_NO, schema.A_NO):
            return 0.5
        preference = given.get(schema.Q_PREFER)
        if (left, right) == (schema.A_YES, schema.A_YES):
            if preference == schema.A_LEFT:
                return weights.w_def
            if preference == schema.A_RIGHT:
                return 1.0 - weights.w_def
            if preference == schema.A_EQUALLY:
                return 0.5
        raise UnlabelableAnswer(f"answers {left!r}, {right!r}, {preference!r} have no DROPJ label")
    if method == "multi-justification":
        justification, preference = given.get(schema.Q_JUSTIFICATION), given.get(schema.Q_PREFERENCE)
        weight = dict(weights.just_weights).get(justification)
        if weight is None:
            raise UnlabelableAnswer(f"justification {justification!r} has no weight "
                                    f"(weights: {dict(weights.just_weights)})")
        if preference == schema.A_LEFT:
            return weight
        if preference == schema.A_RIGHT:
            return 1.0 - weight
        if preference == schema.A_EQUALLY:
            return 0.5
        raise UnlabelableAnswer(f"preference {preference!r} has no label")
    raise ValueError(f"unknown feedback method {method!r}")


def _allowed_answers(spec: FeedbackSpec) -> dict[str, tuple[str, ...]]:
    """Question -> the answers its GUI offered. ('Equally' under DROP is known, but has no label.)"""
    preference = (schema.A_LEFT, schema.A_RIGHT, schema.A_EQUALLY)
    if spec.method == "DROPJ":
        yes_no = (schema.A_YES, schema.A_NO)
        return {schema.Q_LEFT_SAFE: yes_no, schema.Q_RIGHT_SAFE: yes_no, schema.Q_PREFER: preference}
    if spec.method == "multi-justification":
        return {schema.Q_JUSTIFICATION: spec.justifications, schema.Q_PREFERENCE: preference}
    return {schema.Q_PREFER: preference}


def questions_in_order(spec: FeedbackSpec, answers: list[tuple]) -> tuple[str, ...]:
    """The questions the GUI asks, given the answers so far (DROPJ asks for a preference only if both safe)."""
    if spec.method == "DROPJ":
        safe = [a for q, a, *_ in answers[:2]] == [schema.A_YES, schema.A_YES]
        return (schema.Q_LEFT_SAFE, schema.Q_RIGHT_SAFE) + ((schema.Q_PREFER,) if safe else ())
    if spec.method == "multi-justification":
        return (schema.Q_JUSTIFICATION, schema.Q_PREFERENCE)
    return (schema.Q_PREFER,)


def validate_queries(data: Any, env: EnvSpec, file: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """data.pkl -> {video: (segment1, segment2)}; raises one DataError listing every problem."""
    if not isinstance(data, dict):
        raise DataError(file=file, field="data.pkl", expected="dict of video name -> segments",
                        got=type(data).__name__)
    shape = (schema.SEGMENT_STEPS, env.latent_dim + 3)
    problems, out = [], {}
    for video, entry in data.items():
        where = f"{file}, query {describe(video)}"
        if not isinstance(video, str) or not _VIDEO.match(video):
            problems.append(f"{where}: expected a key like '17.mp4' (at most 9 digits)")
            continue
        if not isinstance(entry, dict) or set(entry) != {"segment1", "segment2"}:
            problems.append(f"{where}: expected a dict with 'segment1' and 'segment2', got "
                            f"{_keys(entry) if isinstance(entry, dict) else type(entry).__name__}")
            continue
        segments = []
        for name in ("segment1", "segment2"):
            seg = entry[name]
            if not isinstance(seg, np.ndarray) or seg.dtype != np.float64 or seg.shape != shape:
                got = f"ndarray {seg.dtype}{list(seg.shape)}" if isinstance(seg, np.ndarray) else type(seg).__name__
                problems.append(f"{where}, field '{name}': expected ndarray float64{list(shape)}, got {got}")
            segments.append(seg)
        out[video] = tuple(segments)
    if problems:
        raise DataError(f"{len(problems)} problems:\n  " + "\n  ".join(problems[:20]) if len(problems) > 1
                        else problems[0])
    return out


def _keys(entry: dict) -> str:
    keys = [describe(k, 30) for k in list(entry)[:8]]
    return "[" + ", ".join(keys) + (f", ... {len(entry)} keys" if len(entry) > 8 else "") + "]"


def _answer_text(item: Any) -> str:
    if isinstance(item, tuple) and len(item) <= 4:
        return "(" + ", ".join(describe(x, 40) for x in item) + ")"
    return describe(item)


@dataclasses.dataclass
class Response:
    """One responses-file entry, validated."""

    index: int
    video: str
    answers: Optional[list[tuple]]  # None when skipped
    repeat_count: int
    total_time: float

    def to_legacy(self, with_seconds: bool) -> dict:
        answers: Any = schema.SKIPPED_ANSWER if self.answers is None else [
            tuple(a[:3]) if with_seconds else tuple(a[:2]) for a in self.answers]
        return {"video": self.video, "responses": answers, "repeat_count": self.repeat_count,
                "total_time": self.total_time}


def validate_response(entry: Any, spec: FeedbackSpec, *, file: str, index: int) -> Response:
    where = f"{file}, entry {index}"
    if not isinstance(entry, dict) or tuple(sorted(entry)) != tuple(sorted(schema.RESPONSE_KEYS)):
        raise DataError(f"{where}: expected a dict with keys {list(schema.RESPONSE_KEYS)}, got "
                        f"{_keys(entry) if isinstance(entry, dict) else type(entry).__name__}")
    video, answers = entry["video"], entry["responses"]
    problems = []
    if not isinstance(video, str) or not _VIDEO.match(video):
        problems.append(f"field 'video': expected a name like '17.mp4', got {describe(video)}")
    if type(entry["repeat_count"]) is not int or not 0 <= entry["repeat_count"] <= _INT32_MAX:
        # stored as int32: a larger count would wrap, so it is refused rather than changed
        problems.append(f"field 'repeat_count': expected an int in [0, {_INT32_MAX}], "
                        f"got {describe(entry['repeat_count'])}")
    if type(entry["total_time"]) is not float:
        problems.append(f"field 'total_time': expected a float, got {type(entry['total_time']).__name__}")
    arity = 3 if spec.answers_have_seconds else 2
    parsed: Optional[list[tuple]] = None
    if answers == schema.SKIPPED_ANSWER:
        parsed = None
    elif not isinstance(answers, list) or not answers:
        problems.append(f"field 'responses': expected 'Skipped' or a list of answers, got {describe(answers)}")
    else:
        parsed = []
        allowed = _allowed_answers(spec)
        for k, item in enumerate(answers):
            ok_shape = (isinstance(item, tuple) and len(item) == arity and all(type(x) is str for x in item[:2])
                        and (arity == 2 or type(item[2]) is float))
            if not ok_shape:
                kind = "(question, answer, seconds: float)" if arity == 3 else "(question, answer)"
                problems.append(f"answer {k}: expected a tuple {kind}, got {_answer_text(item)}")
                continue
            question, answer = item[0], item[1]
            expected_questions = questions_in_order(spec, parsed + [item])
            if k >= len(expected_questions) or question != expected_questions[k]:
                problems.append(f"answer {k}: unexpected question {describe(question)} for {spec.method} "
                                f"(expected {list(expected_questions)})")
            elif answer not in allowed[question]:
                problems.append(f"answer {k}: unknown answer {describe(answer)} to {describe(question)} "
                                f"(expected one of {list(allowed[question])})")
            parsed.append(item)
        if parsed is not None and not problems and len(parsed) != len(questions_in_order(spec, parsed)):
            problems.append(f"field 'responses': expected answers to {list(questions_in_order(spec, parsed))}, "
                            f"got {len(parsed)}")
    if problems:
        raise DataError(f"{where} (video {describe(video)}): " + "; ".join(problems))
    return Response(index, video, parsed, entry["repeat_count"], entry["total_time"])


def _segment_steps(segment: np.ndarray, env: EnvSpec) -> dict:
    return {schema.OBSERVATION: segment[:, :env.latent_dim], schema.ACTION: segment[:, env.latent_dim:]}


def _segment(steps: dict) -> np.ndarray:
    """Inverse of `_segment_steps`: the data.pkl row layout [z|c|h, scaled action]."""
    return np.concatenate([steps[schema.OBSERVATION], steps[schema.ACTION]], axis=1).astype(np.float64)


def _query(video: str, segments: tuple[np.ndarray, np.ndarray], env: EnvSpec) -> dict:
    return {
        schema.QUERY_ID: video,
        schema.QUERY_INDEX: int(_VIDEO.match(video).group(1)),
        schema.LEFT: _segment_steps(segments[0], env),
        schema.RIGHT: _segment_steps(segments[1], env),
    }


def query_examples(spec: QuerySpec, queries: Mapping[str, tuple[np.ndarray, np.ndarray]],
                   videos: Mapping[str, bytes]) -> Iterator[tuple[int, dict]]:
    """(position in data.pkl, example) for every query, with its video's bytes as released."""
    for index, (video, segments) in enumerate(queries.items()):
        yield index, {**_query(video, segments, spec.env), schema.VIDEO: videos[video]}


def is_video_name(name: str) -> bool:
    """'17.mp4': the only file names a query may give (export writes them)."""
    return bool(_VIDEO.match(name))


def query_from_example(example: dict) -> tuple[str, dict, bytes]:
    """A decoded `queries` example -> (video name, its data.pkl entry, the mp4 bytes)."""
    return (text(example[schema.QUERY_ID]),
            {"segment1": _segment(example[schema.LEFT]), "segment2": _segment(example[schema.RIGHT])},
            bytes(example[schema.VIDEO]))


def _summary(spec: FeedbackSpec, answers: Optional[list[tuple]]) -> tuple[str, str]:
    """(preference, justification) strings of an example."""
    if answers is None:
        return "", ""
    given = {q: a for q, a, *_ in answers}
    if spec.method == "DROPJ":
        return given.get(schema.Q_PREFER, ""), f"{given[schema.Q_LEFT_SAFE]}/{given[schema.Q_RIGHT_SAFE]}"
    if spec.method == "multi-justification":
        return given[schema.Q_PREFERENCE], given[schema.Q_JUSTIFICATION]
    return given[schema.Q_PREFER], ""


def to_example(spec: FeedbackSpec, response: Response, segments: tuple[np.ndarray, np.ndarray],
               weights: LabelWeights, file: str) -> dict:
    answers = response.answers or []
    label = math.nan
    if response.answers is not None:
        try:
            label = label_for(spec.method, answers, weights)
        except UnlabelableAnswer as exc:
            raise UnlabelableAnswer(f"{file}, entry {response.index} (video {response.video!r}): {exc}") from None
    preference, justification = _summary(spec, response.answers)
    return {
        **_query(response.video, segments, spec.env),
        schema.RESPONSE_INDEX: response.index,
        schema.RESPONSE: {
            schema.SKIPPED: response.answers is None,
            schema.ANSWERS: {
                schema.QUESTION: [a[0] for a in answers],
                schema.ANSWER: [a[1] for a in answers],
                schema.SECONDS: np.array([a[2] if len(a) > 2 else math.nan for a in answers], np.float64),
            },
            schema.REPEAT_COUNT: response.repeat_count,
            schema.TOTAL_TIME: np.float64(response.total_time),
        },
        schema.ANNOTATOR: {schema.USER_ID: spec.user_id, schema.METHOD: spec.method},
        schema.PREFERENCE: preference,
        schema.JUSTIFICATION: justification,
        schema.LABEL: np.float64(label),
        schema.HAS_LABEL: response.answers is not None,
    }


def iter_examples(spec: FeedbackSpec, queries: Mapping[str, tuple[np.ndarray, np.ndarray]],
                  responses: Iterator[Any], weights: LabelWeights, file: str) -> Iterator[tuple[int, dict]]:
    """(response index, example) for every entry; duplicate or unknown videos are errors."""
    seen: dict[str, int] = {}
    for index, entry in enumerate(responses):
        response = validate_response(entry, spec, file=file, index=index)
        if response.video in seen:
            raise DataError(f"{file}, entry {index}: video {response.video!r} was already answered in "
                            f"entry {seen[response.video]}")
        seen[response.video] = index
        if response.video not in queries:
            raise DataError(f"{file}, entry {index}: video {response.video!r} has no segments in "
                            f"{spec.queries_file}")
        yield index, to_example(spec, response, queries[response.video], weights, file)


def from_example(example: dict, spec: FeedbackSpec) -> dict:
    """A decoded (numpy) example -> its responses-file entry, with the release's Python types."""
    response = example[schema.RESPONSE]
    answers = None
    if not response[schema.SKIPPED]:
        a = response[schema.ANSWERS]
        answers = [(text(q), text(ans), float(sec)) for q, ans, sec in
                   zip(a[schema.QUESTION], a[schema.ANSWER], a[schema.SECONDS])]
    return Response(int(example[schema.RESPONSE_INDEX]), text(example[schema.QUERY_ID]), answers,
                    int(response[schema.REPEAT_COUNT]), float(response[schema.TOTAL_TIME])
                    ).to_legacy(spec.answers_have_seconds)


def text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def prepare_preferences(spec: FeedbackSpec, manual_dir: str, config: Any) -> tuple[dict, Iterator[tuple[int, dict]]]:
    """Dataset metadata and examples of a preference config; `config` carries the label weights."""

    refs = sources.locate(manual_dir, spec.all_sources, required=spec.all_sources)
    weights = LabelWeights(config.w_s, config.w_def, tuple(config.just_weights))
    metadata = {
        "source_files": {name: str(ref) for name, ref in refs.items()},
        "label_weights": weights.to_metadata(),
        "preset": spec.config,  # which schema config a custom-named config is
        "responses_pickle_protocol": kinds.read_protocol(refs[spec.responses_file]),
    }
    return metadata, _preference_examples(spec, refs, weights)


def _preference_examples(spec: FeedbackSpec, refs: dict, weights: LabelWeights) -> Iterator[tuple[int, dict]]:

    queries_ref, responses_ref = refs[spec.queries_file], refs[spec.responses_file]
    with queries_ref.open() as f:
        queries = validate_queries(legacy_pickle.load(f, str(queries_ref), size=queries_ref.size), spec.env,
                                   str(queries_ref))
    with responses_ref.open() as f:
        entries = legacy_pickle.iter_list(f, str(responses_ref), size=responses_ref.size)
        for index, example in iter_examples(spec, queries, entries, weights, str(responses_ref)):
            yield kinds.example_key(index, str(responses_ref)), example


def prepare_queries(spec: QuerySpec, manual_dir: str, config: Any = None) -> tuple[dict, Iterator[tuple[int, dict]]]:
    """Dataset metadata and examples of the `queries` config: data.pkl and every video it names."""

    found = sources.index(manual_dir)
    [queries_ref] = sources.locate(manual_dir, spec.all_sources, required=spec.all_sources, found=found).values()
    with queries_ref.open() as f:
        queries = validate_queries(legacy_pickle.load(f, str(queries_ref), size=queries_ref.size), spec.env,
                                   str(queries_ref))
    names = tuple(f"{spec.folder}/{video}" for video in queries)
    videos = sources.locate(manual_dir, names, required=names, found=found)  # all present, or one clear error
    metadata = {"source_files": {spec.queries_file: str(queries_ref), "videos": f"{len(videos)} files beside it"},
                "queries_pickle_protocol": kinds.read_protocol(queries_ref)}

    def read(video: str) -> bytes:  # one video in memory at a time, of bounded size
        return videos[f"{spec.folder}/{video}"].read_bytes(MAX_VIDEO_BYTES)

    def examples() -> Iterator[tuple[int, dict]]:
        for index, example in query_examples(spec, queries, _Videos(read)):
            yield kinds.example_key(index, str(queries_ref)), example

    return metadata, examples()


class _Videos:
    """video name -> bytes, read from the source when asked."""

    def __init__(self, read: Any):
        self._read = read

    def __getitem__(self, video: str) -> bytes:
        return self._read(video)


# --- back to the release files, and summaries -------------------------------------------------------

def preference_files(built: Any) -> list[LegacyFile]:
    """A preference config reproduces its responses file (data.pkl comes from `queries`)."""
    spec = built.spec
    return [LegacyFile(spec.responses_file, "list", built.protocol("responses_pickle_protocol"),
                       lambda: (from_example(example, spec) for example in built.examples()))]


def query_files(built: Any) -> list[LegacyFile]:
    """The `queries` config reproduces data.pkl and every video beside it, byte for byte."""
    spec = built.spec

    def queries() -> Iterator[tuple[str, dict, bytes]]:
        for example in built.examples():
            video, entry, mp4 = query_from_example(example)
            if not is_video_name(video):
                raise DataError(f"{built.directory}: query id {video[:60]!r} is not a video name like '17.mp4'")
            yield video, entry, mp4

    return [LegacyFile(spec.queries_file, "pickle", built.protocol("queries_pickle_protocol"),
                       lambda: {video: entry for video, entry, _ in queries()}),
            LegacyFile(f"{spec.folder}/*.mp4", "raw", 0,
                       lambda: ((f"{spec.folder}/{video}", mp4) for video, _, mp4 in queries()))]


def summarise_preferences(spec: FeedbackSpec, examples: Iterable[dict]) -> str:
    """Examples, skipped queries, and counts per answer pattern and per label."""
    answers: collections.Counter = collections.Counter()
    labels: collections.Counter = collections.Counter()
    skipped = 0
    for example in examples:
        response = example[schema.RESPONSE]
        if response[schema.SKIPPED]:
            skipped += 1
            continue
        answers["/".join(text(a) for a in response[schema.ANSWERS][schema.ANSWER])] += 1
        labels[round(float(example[schema.LABEL]), 4)] += 1
    return (f"{skipped + sum(answers.values())} examples, {skipped} skipped; answers "
            + ", ".join(f"{k}: {v}" for k, v in sorted(answers.items()))
            + "; labels " + ", ".join(f"{k:g}: {v}" for k, v in sorted(labels.items())))


def summarise_queries(spec: QuerySpec, examples: Iterable[dict]) -> str:
    sizes = [len(example[schema.VIDEO]) for example in examples]
    return f"{schema.counted(len(sizes), 'query', 'queries')}, {sum(sizes) / 1e3:.0f} kB of mp4"


PREFERENCES = kinds.Converter(prepare_preferences, preference_files, summarise_preferences)
QUERIES = kinds.Converter(prepare_queries, query_files, summarise_queries)
