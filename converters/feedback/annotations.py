"""Human feedback collected with `dropj annotate`: where it is kept, how a session commits it, how it exports.

    OUT/dropj_annotations/METHOD/1.0.0/      a TFDS directory (`tfds.builder_from_directory` reads it)
        dropj_annotations-train.tfrecord-00000 ...   one closed shard per committed response

Each example is a `preferences_*` example (the query's two clips, the answers
with their times, the label by the paper's rule) plus who answered, in which
session and browser, and when (`schema.AnnotationSpec`). The directory has the
recorder's guarantees (`store.shards.ShardStore`): one writer, a response
committed durably (its shard flushed and listed) before the next query is
shown, nothing overwritten, and `dropj repair-recording` for a directory
whose list and shards disagree. `dropj export` writes one responses file per
annotator, `responses_user{ID}_s20_q{N}_{method}.pkl`, with the release's
structure and Python types.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

import numpy as np

from dropj.converters.release import kinds, preferences
from dropj.converters.release.kinds import LegacyFile
from dropj.converters.store import durable
from dropj.converters.store.shards import ShardStore
from dropj_datasets import package_version, schema
from dropj_datasets.schema import AnnotationSpec, DataError

VERSION = "1.0.0"  # this store's layout (each store has its own)


def annotation_dir(out: str | os.PathLike, method: str) -> Path:
    """Where `dropj annotate --method METHOD --out OUT` writes: the usual TFDS layout name/config/version."""
    if method not in schema.ANNOTATIONS:
        raise ValueError(f"unknown method {str(method)[:20]!r}; choose one of {', '.join(schema.ANNOTATIONS)}")
    return Path(out) / schema.ANNOTATION_DATASET / method / VERSION


class AnnotationStore(ShardStore):
    """An open annotation directory; `append` one committed response at a time, then `close`."""

    DATASET = schema.ANNOTATION_DATASET
    VERSION = VERSION
    ITEM = "response"
    WRITER, ONE = "annotation server", "annotation server"
    INDEX_FIELD = (schema.RESPONSE_INDEX,)

    def _info_metadata(self) -> dict:
        return {"label_weights": preferences.LabelWeights.of(self.spec).to_metadata()}


def response_example(spec: AnnotationSpec, entry: dict, index: int, segments: tuple[np.ndarray, np.ndarray], *,
                     user: int, session: str, start_time: float, user_agent: str,
                     answered_at: Optional[float] = None) -> dict:
    """The example of one committed responses-file entry (made by `study.Study`), in the preferences schema."""
    response = preferences.validate_response(entry, spec, file="annotation", index=index)
    example = preferences.to_example(dataclasses.replace(spec, user_id=user), response, segments,
                                  preferences.LabelWeights.of(spec), "annotation")
    example[schema.ANNOTATION] = {
        schema.SESSION_ID: session,
        schema.START_TIME: np.float64(start_time),
        schema.ANSWERED_AT: np.float64(time.time() if answered_at is None else answered_at),
        schema.USER_AGENT: user_agent[:500],
        schema.DROPJ_VERSION: package_version(),
    }
    return example


# --- a study's participants (`dropj annotate --study`) ------------------------------------------------------
# Beside the store, not in it: `OUT/dropj_participants/METHOD/user{ID}.json`, rewritten whole (atomically) at
# each change. It holds what is not a response: the study file's hash, the participant's order of the queries
# (fixed before their first query, so a restart or another study file version never reorders them), when
# they consented, and their practice answers, which are kept out of the annotation directory on purpose:
# everything in it is training data (`dropj train reward`, `dropj export`).

def participant_path(out: str | os.PathLike, method: str, user: int) -> Path:
    return Path(out) / "dropj_participants" / method / f"user{int(user)}.json"


def read_participant(path: Path) -> Optional[dict]:
    try:
        with open(path, "rb") as f:
            record = json.loads(f.read(16 << 20))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable participant record ({schema.one_line(exc, 200)}); move it away "
                        "to start that participant again") from None
    if not isinstance(record, dict) or not isinstance(record.get("order"), list):
        raise DataError(f"{path}: not a participant record (no 'order'); move it away to start that participant again")
    return record


def write_participant(path: Path, record: dict) -> None:
    data = json.dumps(record, indent=1, sort_keys=True).encode()
    durable.write_atomically(path, lambda f: f.write(data), force=True)


# --- back to the release's files ------------------------------------------------------------------------

def _user(example: dict) -> int:
    return int(example[schema.ANNOTATOR][schema.USER_ID])


def legacy_files(built: Any) -> list[LegacyFile]:
    """One responses file per annotator, in the order they answered (the release's names and structure)."""
    spec = built.spec
    counts: dict[int, int] = {}
    for example in built.examples():
        counts[_user(example)] = counts.get(_user(example), 0) + 1

    def entries(user: int) -> Iterator[dict]:
        return (preferences.from_example(example, spec) for example in built.examples() if _user(example) == user)

    return [LegacyFile(spec.responses_file.format(user=user, n=n), "list", schema.RESPONSES_PICKLE_PROTOCOL,
                       lambda user=user: entries(user))
            for user, n in sorted(counts.items())]


def summarise(spec: AnnotationSpec, examples: Iterable[dict]) -> str:
    examples = list(examples)
    users = sorted({_user(example) for example in examples})
    return preferences.summarise_preferences(spec, examples) + f"; annotators {users}"


CONVERTER = kinds.Converter(kinds.written_by("dropj annotate"), legacy_files, summarise)


# --- a collecting session -------------------------------------------------------------------------------

class Annotations:
    """The queries of a built queries dataset and the responses collected for them, for one method.

    `next_query(user)` is the first query (in data.pkl order) that user has not answered, so a
    restarted server resumes where each annotator stopped; `commit` stores one finished response
    durably before it returns. Only whole responses are stored: a half-answered query never is.

    One response per (user, query), stored once: a commit that raises stored nothing (the store's
    `NotStored`, or a refusal), so trying again is safe; a commit of the answer already stored for that
    (user, query) (a browser retrying after a lost reply, a restarted server included) stores nothing
    and returns the stored response's index. Other answers to a query the user has answered are
    refused: the first answer stands (a participant does not revise an answer in the release's studies).
    """

    def __init__(self, queries: str, method: str, out: str | os.PathLike, *, data_dir: Optional[str] = None,
                 holder: str = "", log: Callable[[str], None] = print):
        from dropj.converters.roundtrip.built import BuiltDataset

        self.spec = schema.ANNOTATIONS[method] if method in schema.ANNOTATIONS else None
        if self.spec is None:
            raise ValueError(f"unknown method {str(method)[:20]!r}; choose one of {', '.join(schema.ANNOTATIONS)}")
        if not os.path.isdir(queries) and "/" in queries:  # NAME/CONFIG: say a wrong kind before looking for it
            try:
                self._check_queries(queries, schema.spec_for(*queries.partition(":")[0].split("/", 1)))
            except (KeyError, TypeError):
                pass  # BuiltDataset.open names the unknown config
        source = BuiltDataset.open(queries, data_dir)
        self._check_queries(queries, source.spec)
        if source.spec.env.latent_dim != self.spec.env.latent_dim:
            raise DataError(f"{queries}: {source.spec.env.name} queries cannot be answered with --method {method} "
                            f"(its questions are for {self.spec.env.name})")
        if self.spec.method == "multi-justification":
            # The obstacle GUI offered Car only with cars, and the label weights differ per variant: take
            # both from the release's preferences config of the queries' environment (same features).
            [study] = [s for cs in schema.DATASETS.values() for s in cs.values()
                       if isinstance(s, schema.FeedbackSpec) and s.method == self.spec.method
                       and s.env is source.spec.env]
            self.spec = dataclasses.replace(self.spec, env=study.env, justifications=study.justifications,
                                            just_weights=study.just_weights)
        self.queries: dict[str, dict] = {}
        for example in source.examples():
            video, entry, mp4 = preferences.query_from_example(example)
            self.queries[video] = {"segments": (entry["segment1"], entry["segment2"]), "video": mp4}
        self.order = list(self.queries)
        self.store = AnnotationStore(annotation_dir(out, method), self.spec, holder=holder, log=log)
        # user -> query -> (the stored response's index, its answer as the responses file holds it)
        self.answered: dict[int, dict[str, tuple[int, dict]]] = {}
        try:
            for index, (user, video, answer) in enumerate(self._stored()):
                self.answered.setdefault(user, {})[video] = (index, answer)
        except BaseException:
            self.store.close()
            raise

    @staticmethod
    def _check_queries(queries: str, spec: Any) -> None:
        if not isinstance(spec, schema.QuerySpec):
            raise DataError(f"{queries}: not a queries dataset (it holds {spec.kind}); "
                            "use e.g. dropj_carracing/queries")

    def _stored(self) -> Iterator[tuple[int, str, dict]]:
        """(user, query, answer as the responses file holds it) of each stored response, in stored order."""
        if not self.store.count:
            return
        import tensorflow_datasets as tfds

        builder = tfds.builder_from_directory(str(self.store.directory))
        for example in tfds.as_numpy(builder.as_dataset(split="train", shuffle_files=False)):
            yield (_user(example), preferences.text(example[schema.QUERY_ID]),
                   preferences.from_example(example, self.spec))

    def next_query(self, user: int, order: Optional[list[str]] = None) -> Optional[str]:
        """The first query of `order` (default: the queries' own) that `user` has not answered."""
        done = self.answered.get(user, {})
        return next((video for video in (self.order if order is None else order) if video not in done), None)

    def progress(self, user: int, among: Optional[list[str]] = None) -> tuple[int, int]:
        """(queries of `among` (default: all) this user answered or skipped, queries in `among`)."""
        done = self.answered.get(user, {})
        if among is None:
            return len(done), len(self.order)
        return sum(video in done for video in among), len(among)

    def commit(self, user: int, entry: dict, *, session: str, start_time: float, user_agent: str) -> int:
        """Stores one finished response durably; returns its index in the directory (the stored one's, for the
        same answer again). Raises `shards.NotStored` (naming the file) when it could not be stored:
        nothing of it is, so the same commit may be tried again."""
        video = entry.get("video") if isinstance(entry, dict) else None
        if video not in self.queries:
            raise DataError(f"query {schema.describe(video, 40)}: not one of the queries being annotated")
        index = self.store.count
        example = response_example(self.spec, entry, index, self.queries[video]["segments"], user=user,
                                   session=session, start_time=start_time, user_agent=user_agent)
        answer = preferences.validate_response(entry, self.spec, file="annotation", index=index).to_legacy(
            self.spec.answers_have_seconds)  # as the directory gives it back (`_stored`)
        stored = self.answered.get(user, {}).get(video)
        if stored is not None:
            if stored[1] == answer:  # a retry of what is stored: nothing more to store
                return stored[0]
            raise DataError(f"user {user} answered {video} already (response {stored[0]}) with other answers; "
                            "the first answer stands")
        self.store.append(example, index_field=AnnotationStore.INDEX_FIELD)
        self.answered.setdefault(user, {})[video] = (index, answer)
        return index

    def close(self) -> None:
        self.store.close()
