"""Storage of a recording: EnvLogger's backend, turning each finished episode into one TFDS example.

Capture (`capture.py`) hands EnvLogger's `StepData` here; `RecordingStore`
(`store.py`, on `store/shards.py`) is the one place that writes the directory. Moving
away from TFDS records is a change to this file and the store only.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Optional

import numpy as np
from envlogger import step_data
from envlogger.backends import backend_writer

from dropj.converters.release import episodes as episodes_lib
from dropj.converters.recording import store as recording_store
from dropj.converters.recording.store import RecordingError
from dropj_datasets import codec, schema
from dropj_datasets.schema import RecordingSpec


class RecordingWriter(backend_writer.BackendWriter):
    """EnvLogger's backend: each finished episode goes into the recording's `RecordingStore` at once.

    It aligns steps as the builders do (`episodes.to_rlds_steps`), which keeps
    `info` with the action it followed rather than with the next observation.
    An episode is written the moment it ends, in a shard of its own, so it is
    on disk and listed before anything else happens. An episode that cannot be
    written goes to a rescue file and `log` says where; if even that fails, a
    `RecordingError` ends the session, saying so.
    """

    def __init__(self, data_dir: str | os.PathLike, env_name: str, *, session_id: str = "",
                 log: Callable[[str], None] = print, store: Optional[recording_store.RecordingStore] = None,
                 **base_kwargs: Any):
        super().__init__(**base_kwargs)
        self._store: Optional[recording_store.RecordingStore] = None  # close() runs from __del__ if opening fails
        self.spec = schema.WRITTEN[schema.RECORDING_DATASET][env_name]
        self.session_id = session_id
        self.log = log
        # A store of its own (locked for this session), or one several sessions share (closed by its opener).
        self._owns_store = store is None
        if store is not None and store.spec != self.spec:
            raise ValueError(f"a {store.spec.config} recording cannot hold {env_name} episodes")
        self._store = store or recording_store.RecordingStore(
            recording_store.recording_dir(data_dir, env_name), self.spec,
            holder=f"session {session_id}" if session_id else "", log=log)
        self.episodes_before = self._store.episodes
        self.episodes_written = 0
        self.rescued: list[str] = []
        self.before_write: Callable[[], None] = lambda: None  # called as an episode ends, before it is written
        self._steps: list[step_data.StepData] = []
        self._episode_metadata: dict = {}
        # the frame codec's thread pool, as the builders use it
        frame_codec = codec.for_field(self.spec.step_field(schema.OBSERVATION))  # None: latent states
        self._frames = frame_codec.pool() if frame_codec else None

    @property
    def directory(self) -> str:
        return str(self._store.directory) if self._store else ""

    def _record_step(self, data: step_data.StepData, is_new_episode: bool) -> None:
        if is_new_episode:
            self._steps = []  # an unfinished episode (restart) is dropped, never half-written
        self._steps.append(data)
        if data.timestep.last():
            self._write_episode()

    def set_episode_metadata(self, data: dict) -> None:
        self._episode_metadata = dict(data)

    def discard_episode(self) -> int:
        """Drops the episode being recorded (restart or quit); returns how many steps it had."""
        dropped = max(len(self._steps) - 1, 0)
        self._steps = []
        return dropped

    def _write_episode(self) -> None:
        self.before_write()
        steps, self._steps = self._steps, []
        index = self._store.episodes  # the episodes listed on disk decide the number (set again as it is written)
        example = episode_example(self.spec, steps, self._episode_metadata, index,
                                  self._frames.encode_all if self._frames else None)
        try:
            self._store.append(example, index_field=recording_store.RecordingStore.INDEX_FIELD)
        except Exception as exc:  # noqa: BLE001 - whatever failed, the episode is kept
            # The store raises only when nothing of the episode is stored (`NotStored`, or before its shard
            # was linked), so the rescue file never doubles an episode of the directory.
            why = schema.one_line(exc, typed=not isinstance(exc, RecordingError))
            try:
                path = self._store.rescue(example, index, self.session_id)
            except RecordingError as again:
                raise RecordingError(f"episode {index} could not be written ({why}) and {again}; it is lost, "
                                     "and the session stops") from None
            self.rescued.append(str(path))
            self.log(f"episode {index} could not be written into {self.directory} ({why}); it is kept in {path}: "
                     f"run `{recording_store.repair_command(self.directory, path)}` to add it")
            return
        self.episodes_written += 1

    def close(self) -> None:
        self._steps = []
        if getattr(self, "_frames", None) is not None:
            self._frames.close()
            self._frames = None
        if self._store is not None:
            if self._owns_store:
                self._store.close()
            self._store = None


def episode_example(spec: RecordingSpec, steps: list[step_data.StepData], metadata: dict, index: int,
                    encode_frames: Optional[Callable[[np.ndarray], list[bytes]]]) -> dict:
    """One finished episode (its StepData from reset to the LAST step) as the TFDS example.

    The release's transitions are (s_t, a_t, r_t, s_{t+1}, done, info_t); the
    EnvLogger step t+1 holds a_t, r_t, info_t and s_{t+1}, so the columns are
    read off steps 1..T and the observations off steps 0..T. A dream (latent states, `encode_frames`
    None) never ends by itself: its last `done` is 0.0, its scaled actions are stored beside the env-unit
    ones, and it is exported with protocol 4, as the release's dream files.
    """
    if len(steps) < 2 or not steps[0].timestep.first() or not steps[-1].timestep.last():
        raise ValueError(f"an episode needs a FIRST and a LAST step, got {len(steps)} steps")
    transitions = steps[1:]
    info = {key: np.array([s.custom_data[schema.INFO][key] for s in transitions], dtype=np.int8)
            for key in spec.info_keys}
    observations = np.stack([s.timestep.observation for s in steps])
    actions = np.stack([np.asarray(s.action, dtype=np.float64) for s in transitions])
    ep = episodes_lib.Episode(
        observations=observations,
        actions=actions,
        actions_scaled=schema.scale_action(actions) if spec.is_dream else None,
        rewards=np.array([s.timestep.reward for s in transitions], dtype=np.int32),
        info=info,
        # the authors' recorder wrote float(done) = 1.0 on the last transition, always; their DreamEnv 0.0
        final_done=0.0 if spec.is_dream else 1.0,
    )
    rlds_steps = episodes_lib.to_rlds_steps(ep, spec, encode_frames(observations) if encode_frames else None)
    rlds_steps[schema.WALL_TIME] = np.array([s.custom_data[schema.WALL_TIME] for s in steps], dtype=np.float64)
    rlds_steps[schema.KEYS_HELD] = np.array([s.custom_data[schema.KEYS_HELD] for s in transitions] +
                                            [(False,) * len(schema.KEYS)], dtype=bool)
    meta = {**metadata, schema.EPISODE_INDEX: index, schema.FINAL_DONE: np.float64(ep.final_done),
            schema.PICKLE_PROTOCOL: schema.DREAM_PICKLE_PROTOCOL if spec.is_dream else schema.RECORDED_PICKLE_PROTOCOL}
    return {schema.STEPS: rlds_steps, schema.EPISODE_METADATA: meta}
