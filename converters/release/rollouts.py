"""The converter of release rollout files (Dataset R and D) and of `dropj record` directories.

Release pickles -> TFDS examples of RLDS episodes (what the builders yield),
and built episodes -> the release pickles again (`legacy_files`). The step
alignment itself is `episodes.py`'s, shared with the recorder.

Building runs `pipeline.Pipeline`: the reading in a reader process, the
PNG encoding in encoder processes, TFDS on the caller's thread, at most five
episodes alive at once whatever the size of the source file.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import itertools
from typing import Any, Callable, Iterable, Iterator, Optional

import numpy as np

from dropj.converters.store import dataset_dir
from dropj.converters.release import episodes as episodes_lib
from dropj.converters.release import kinds, sources
from dropj.converters.store import legacy_pickle
from dropj.converters.build import pipeline
from dropj.converters.store.dataset_dir import checked_protocol
from dropj.converters.release.kinds import LegacyFile, example_key, read_protocol
from dropj.converters.release.sources import SourceRef
from dropj_datasets import codec, schema
from dropj_datasets.schema import DataError, DatasetSpec


@dataclasses.dataclass
class InitialStateFile:
    """A default_init_obs*.pkl file, kept whole as provenance of dream episodes."""

    name: str
    protocol: int
    is_list: bool  # a list of states, or one bare array
    states: np.ndarray  # (n, latent_dim) float64

    def to_metadata(self) -> dict:
        return {"protocol": self.protocol, "structure": "list" if self.is_list else "array",
                "dtype": "float64", "shape": list(self.states.shape),
                "data_base64": base64.b64encode(self.states.tobytes()).decode("ascii")}

    @classmethod
    def from_metadata(cls, name: str, meta: Any, latent_dim: int, where: str) -> "InitialStateFile":
        """From a dataset's metadata.json, which is untrusted: every value is checked against the schema."""
        if not isinstance(meta, dict) or meta.get("dtype") != "float64" \
                or meta.get("structure") not in ("list", "array"):
            raise DataError(f"{where}: initial state file {name}: not the metadata dropj writes")
        shape = meta.get("shape")
        if (not isinstance(shape, list) or len(shape) != 2 or not all(type(n) is int for n in shape)
                or not 1 <= shape[0] <= 100_000 or shape[1] != latent_dim
                or (meta["structure"] == "array" and shape[0] != 1)):
            raise DataError(f"{where}: initial state file {name}: shape {str(shape)[:60]}, expected "
                            f"[n, {latent_dim}]")
        text = meta.get("data_base64")
        if not isinstance(text, str) or len(text) != 4 * -(-shape[0] * latent_dim * 8 // 3):
            raise DataError(f"{where}: initial state file {name}: data of the wrong length")
        try:
            raw = base64.b64decode(text, validate=True)
        except ValueError:
            raise DataError(f"{where}: initial state file {name}: data is not base64") from None
        states = np.frombuffer(raw, dtype=np.float64).reshape(shape).copy()
        return cls(name, checked_protocol(meta.get("protocol"), where), meta["structure"] == "list", states)

    def to_legacy(self) -> Any:
        rows = [np.array(row) for row in self.states]
        return rows if self.is_list else rows[0]


def load_initial_states(ref: SourceRef, spec: DatasetSpec) -> InitialStateFile:
    with ref.open() as f:
        value = legacy_pickle.load(f, str(ref), size=ref.size)
    shape = (spec.env.latent_dim,)
    items = value if isinstance(value, list) else [value]
    for i, state in enumerate(items):
        if not isinstance(state, np.ndarray) or state.dtype != np.float64 or state.shape != shape:
            got = f"ndarray {state.dtype}{list(state.shape)}" if isinstance(state, np.ndarray) else type(state).__name__
            raise DataError(file=str(ref), episode=None, field=f"state {i}" if isinstance(value, list) else "state",
                            expected=f"ndarray float64{list(shape)}", got=got)
    if not items:
        raise DataError(f"{ref}: expected at least one initial state, got an empty list")
    return InitialStateFile(ref.name, read_protocol(ref), isinstance(value, list), np.stack(items))


def read_episodes(spec: DatasetSpec, refs: dict[str, SourceRef],
                  allocate: Callable[[tuple[int, ...], np.dtype], np.ndarray] = np.empty,
              ) -> Iterator[tuple[int, episodes_lib.Episode]]:
    """Validated episodes of one config, joining the env-unit and scaled dream files."""
    names = [name for name in (spec.sources.episodes, spec.sources.scaled) if name and name in refs]
    streams = []
    for name in names:
        streams.append(_stream(refs[name], spec, allocate))
    sentinel = object()
    for index, pair in enumerate(itertools.zip_longest(*streams, fillvalue=sentinel)):
        if any(item is sentinel for item in pair):
            short = [names[i] for i, item in enumerate(pair) if item is sentinel]
            raise DataError(f"{', '.join(short)}: ends after {index} episodes, before the other source file")
        if spec.is_dream:
            by_name = dict(zip(names, pair))
            yield index, episodes_lib.merge_scaled(
                by_name.get(spec.sources.episodes), by_name.get(spec.sources.scaled),
                file=" + ".join(str(refs[n]) for n in names), episode=index)
        else:
            yield index, pair[0]


def _stream(ref: SourceRef, spec: DatasetSpec,
            allocate: Callable[[tuple[int, ...], np.dtype], np.ndarray] = np.empty) -> Iterator[episodes_lib.Episode]:
    with ref.open() as f:
        for index, raw in enumerate(legacy_pickle.iter_list(f, str(ref), size=ref.size,
                                                              limits=episodes_lib.reader_limits(spec))):
            yield episodes_lib.from_legacy(raw, spec, file=str(ref), episode=index, allocate=allocate)
            del raw


def episode_metadata(spec: DatasetSpec, refs: dict[str, SourceRef], index: int, ep: episodes_lib.Episode,
                     protocol: int, initial: dict[bytes, tuple[str, int]]) -> dict:
    meta = {
        schema.SOURCE_FILE: spec.sources.episodes if spec.sources.episodes in refs else "",
        schema.EPISODE_INDEX: index,
        schema.FINAL_DONE: np.float64(ep.final_done),
        schema.PICKLE_PROTOCOL: protocol,
    }
    if spec.is_dream:
        state_file, state_index = initial.get(ep.initial_state.tobytes(), ("", -1))
        meta.update({
            schema.SOURCE_FILE_SCALED: spec.sources.scaled if spec.sources.scaled in refs else "",
            schema.INITIAL_STATE: ep.initial_state,
            schema.INITIAL_STATE_FILE: state_file,
            schema.INITIAL_STATE_INDEX: state_index,
        })
    return meta


@dataclasses.dataclass
class ExampleMaker:
    """(key, example) of an episode of one config; picklable, so a Beam worker can run it too."""

    spec: DatasetSpec
    refs: dict[str, SourceRef]
    protocol: int
    initial: dict[bytes, tuple[str, int]]  # initial state bytes -> (its file, its index there)

    @classmethod
    def of(cls, spec: DatasetSpec, refs: dict[str, SourceRef],
           initial_states: Optional[list[InitialStateFile]] = None) -> "ExampleMaker":
        main = refs.get(spec.sources.episodes) or refs.get(spec.sources.scaled or "")
        if main is None:
            raise DataError(f"no source file for {spec.config}: need {spec.sources.episodes}")
        initial = {}
        for state_file in initial_states or []:
            for i, state in enumerate(state_file.states):
                initial.setdefault(state.tobytes(), (state_file.name, i))
        return cls(spec, refs, read_protocol(main), initial)

    @property
    def main(self) -> SourceRef:
        return self.refs.get(self.spec.sources.episodes) or self.refs[self.spec.sources.scaled]

    @property
    def frame_codec(self) -> Optional[codec.FrameCodec]:
        return codec.for_field(self.spec.step_field(schema.OBSERVATION))  # None for latent states

    def __call__(self, index: int, ep: episodes_lib.Episode,
                 observations: Optional[list[bytes]] = None) -> tuple[int, dict]:
        """`observations`: the encoded frames, when the observations are images."""
        return example_key(index, str(self.main)), {
            schema.STEPS: episodes_lib.to_rlds_steps(ep, self.spec, observations),
            schema.EPISODE_METADATA: episode_metadata(self.spec, self.refs, index, ep, self.protocol, self.initial),
        }

    def read(self, allocate: Callable[[tuple[int, ...], np.dtype], np.ndarray] = np.empty,
             ) -> Iterator[tuple[int, episodes_lib.Episode]]:
        """The config's validated episodes, in source order."""
        return read_episodes(self.spec, self.refs, allocate)


def iter_examples(make: ExampleMaker, workers: Optional[int] = None) -> Iterator[tuple[int, dict]]:
    """(key, example) pairs in source order, ready for a TFDS builder to yield."""
    frame_field = make.spec.step_field(schema.OBSERVATION)
    slot_bytes = ((episodes_lib.max_episode_steps() + 1) * int(np.prod(frame_field.shape))
                  * frame_field.np_dtype.itemsize)

    def example(index: int, ep: episodes_lib.Episode, frames: Optional[pipeline.EncodedFrames]) -> tuple[int, dict]:
        return make(index, ep, None if frames is None else frames.result())  # then the frames' slot is free again

    with pipeline.Pipeline(make.read, make.frame_codec, slot_bytes, make.spec.config, encoders=workers) as episodes:
        # One episode's frames are always being encoded while TFDS serialises and writes the previous one.
        previous = None
        for item in episodes.episodes():
            if previous is not None:
                yield example(*previous)
            previous = item
        if previous is not None:
            yield example(*previous)


def _located(spec: DatasetSpec, manual_dir: str) -> tuple[dict, ExampleMaker]:
    found = sources.index(manual_dir)
    required = (spec.sources.episodes,)
    if spec.is_dream and spec.sources.scaled in found:
        required = ()  # either dream file will do
    refs = sources.locate(manual_dir, spec.sources.all, required=required, found=found)
    initial_states = [load_initial_states(refs[name], spec) for name in spec.sources.initial_states if name in refs]
    metadata = {"source_files": {name: str(ref) for name, ref in refs.items()},
                "initial_state_files": {f.name: f.to_metadata() for f in initial_states}}
    return metadata, ExampleMaker.of(spec, refs, initial_states)


def prepare(spec: DatasetSpec, manual_dir: str, config: Any = None) -> tuple[dict, Iterator[tuple[int, dict]]]:
    """Dataset metadata (the initial-state files kept whole) and the episodes of a rollout config."""
    metadata, make = _located(spec, manual_dir)
    return metadata, iter_examples(make)


def prepare_beam(spec: DatasetSpec, manual_dir: str, config: Any = None) -> tuple[dict, Any]:
    """`prepare` for Apache Beam: the metadata, and a `beam.PTransform` of the (key, example) pairs."""
    from dropj.converters.build import beam  # imports apache_beam: only when a Beam build asks for it

    metadata, make = _located(spec, manual_dir)
    return metadata, beam.Episodes(functools.partial(iter_examples, make), str(make.main), spec.config)


# --- back to the release files -----------------------------------------------------------------------

def initial_state_files(built: Any) -> list[InitialStateFile]:
    where = built.metadata_file
    files = built.metadata().get("initial_state_files", {})
    if not isinstance(files, dict):
        raise DataError(f"{where}: initial_state_files is not a mapping")
    allowed = built.spec.sources.initial_states
    return [InitialStateFile.from_metadata(dataset_dir.checked_name(name, allowed, where), meta,
                                           built.spec.env.latent_dim, where)
            for name, meta in files.items()]


def legacy_files(built: Any) -> list[LegacyFile]:
    """The rollout files a built config reproduces: the episode file(s) and the initial-state files."""
    spec = built.spec
    built_from = built.metadata().get("source_files", {})
    if not isinstance(built_from, dict):
        raise DataError(f"{built.metadata_file}: source_files is not a mapping")
    out = []
    variants = [(spec.sources.episodes, False)] + ([(spec.sources.scaled, True)] if spec.is_dream else [])
    for name, scaled in variants:  # which action columns exist is this, never the values
        if name in built_from:
            out.append(LegacyFile(name, "list", None, lambda scaled=scaled: (
                episodes_lib.to_legacy(ep, spec, scaled=scaled) for _, ep, _ in built.episodes())))
    for state_file in initial_state_files(built):
        out.append(LegacyFile(state_file.name, "pickle", state_file.protocol, state_file.to_legacy))
    return out


def recording_files(built: Any) -> list[LegacyFile]:
    """A `dropj record` directory: Dataset R's format, named like the release's file; a dream recording
    gives both dream files, with env-unit and with scaled actions (Dataset D's format)."""
    spec = built.spec
    variants = [(spec.sources.episodes, False)] + ([(spec.sources.scaled, True)] if spec.is_dream else [])
    return [LegacyFile(name.format(n=built.count), "list", None, lambda scaled=scaled: (
        episodes_lib.to_legacy(ep, spec, scaled=scaled) for _, ep, _ in built.episodes()))
            for name, scaled in variants]


def summarise(spec: Any, examples: Iterable[dict]) -> str:
    """Episodes, transitions, terminal episodes and the mean return of decoded examples."""
    lengths, returns, terminal = [], [], 0
    extra_last_step = schema.kind_of(spec).extra_last_step  # an extra last step holds s_T
    for example in examples:
        steps = example[schema.STEPS]
        lengths.append(len(steps[schema.IS_FIRST]) - extra_last_step)
        returns.append(float(np.sum(steps[schema.REWARD])))
        terminal += bool(np.any(steps[schema.IS_TERMINAL]))
    mean = float(np.mean(returns)) if returns else 0.0
    return (f"{schema.counted(len(lengths), 'episode')}, {schema.counted(int(np.sum(lengths)), 'transition')}, "
            f"{terminal} terminal, mean return {mean:.1f}")


CONVERTER = kinds.Converter(prepare, legacy_files, summarise, episodes_lib.reader_limits, complete_sources=True,
                            prepare_beam=prepare_beam)
RECORDINGS = kinds.Converter(kinds.written_by("dropj record"), recording_files, summarise, episodes_lib.reader_limits)
