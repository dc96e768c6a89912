"""Live sessions -> RLDS: the DROPJ environments behind dm_env, logged by EnvLogger into a TFDS directory.

Capture is separate from storage:

* `DmEnvAdapter` puts a gymnasium DROPJ environment behind the `dm_env`
  interface EnvLogger wraps: FIRST on reset, then MID, and LAST with
  discount 0 when the car left the playfield (termination) or discount 1 at
  the 1000-step limit (truncation). Each reset gets its own seed, so every
  episode's track can be rebuilt from its metadata.
* `envlogger.EnvLogger` records every step; its `step_fn` adds what the
  transition's dm_env timestep cannot carry: the info flags, the wall-clock
  time and the arrow keys held (`StepExtras`).
* `RecordingWriter`, EnvLogger's backend, hands each finished episode to
  `recording_store.RecordingStore`, the one place that writes the directory.
  Steps are those of the release's `real` configs, aligned exactly as the
  builders align them (the same `episodes.to_rlds_steps`), plus the
  recording's step and episode metadata, all with features generated from
  `schema.RECORDINGS` (a test compares them with the builders').

Nothing lost (`recording_store` says how): one recorder per directory; each
finished episode is its own closed shard, never overwriting one, listed
atomically before the next reset, so a crash or a SIGKILL loses at most the
episode being driven; an episode that cannot be written is kept in a rescue
file. An unfinished episode (the driver restarted or quit) is discarded, never
written: every stored episode ended as the release's did, by leaving the
playfield or at the time limit. Writing into a directory that already holds
a recording of the same environment appends new shards; a recording of
another environment there is refused.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import dm_env
import numpy as np
from dm_env import specs
from envlogger import step_data
from envlogger.backends import backend_writer

from dropj.converters import episodes as episodes_lib
from dropj.converters import png, recording_store
from dropj.converters.recording_store import RecordingError
from dropj_datasets import schema
from dropj_datasets.schema import RecordingSpec

RECORDING_VERSION = recording_store.VERSION
MAX_SEED = 2**63 - 1  # the `seed` feature is int64
SPLIT = recording_store.SPLIT
ENV_IDS = {"carracing": ("DropjCarRacing-v0", ""), "chuckc": ("DropjObstCarRacing-v0", "chuckc"),
           "chuckccar": ("DropjObstCarRacing-v0", "chuckccar")}


def recording_dir(data_dir: str | os.PathLike, env_name: str) -> Path:
    """Where `dropj record --out data_dir` writes: the usual TFDS layout name/config/version."""
    return Path(data_dir) / schema.RECORDING_DATASET / env_name / RECORDING_VERSION


def make_env(env_name: str, max_steps: Optional[int] = None) -> Any:
    """The gymnasium environment of a recording config, with its TimeLimit (default: the study's 1000 steps)."""
    import gymnasium

    import dropj_datasets.envs  # noqa: F401  (registers the ids)

    env_id, mode = ENV_IDS[env_name]
    kwargs = {"mode": mode} if mode else {}
    return gymnasium.make(env_id, max_episode_steps=max_steps, disable_env_checker=True, **kwargs)


# --- capture ----------------------------------------------------------------------------------------


def info_tristates(env: schema.EnvSpec, info: dict, terminated: bool, truncated: bool) -> dict[str, int]:
    """One transition's info as the schema's tri-states, with gym 0.20's TimeLimit key.

    gym 0.20's TimeLimit wrote `TimeLimit.truncated = not done_env` on the
    1000th step only: True when the limit cut the episode, False when the car
    also left the playfield on that step, absent on every other step.
    """
    out = {}
    for key in env.info_keys:
        if key == schema.TIME_LIMIT_TRUNCATED:
            out[key] = (schema.INFO_FALSE if terminated else schema.INFO_TRUE) if truncated else schema.INFO_ABSENT
        else:
            out[key] = schema.INFO_TRUE if info.get(key) else schema.INFO_ABSENT
    return out


class DmEnvAdapter(dm_env.Environment):
    """A gymnasium DROPJ environment as a `dm_env.Environment` (what EnvLogger wraps).

    `seeds` yields one reset seed per episode (default: fresh OS entropy).
    After each step, `last_info` holds what the gymnasium step returned that
    a TimeStep cannot: the info tri-states of the transition.
    """

    def __init__(self, env_name: str, gym_env: Any = None, seeds: Optional[Iterator[int]] = None):
        from dropj_datasets.envs.seeding import entropy_seed

        self.env_name = env_name
        self.env_spec = schema.RECORDINGS[env_name].env
        self.gym_env = gym_env if gym_env is not None else make_env(env_name)
        self._seeds = seeds if seeds is not None else iter(entropy_seed, None)
        limit = getattr(getattr(self.gym_env, "spec", None), "max_episode_steps", None)
        if not limit:
            raise ValueError(f"{env_name}: the environment needs a step limit (gymnasium's TimeLimit), "
                             "as every release episode had one")
        self.time_limit = int(limit)
        self.seed: Optional[int] = None
        self.start_time = float("nan")
        self.last_info: dict[str, int] = {}
        self.last_raw_info: dict = {}
        self.episode_return = 0
        self.episode_steps = 0

    def reset(self) -> dm_env.TimeStep:
        seed = int(next(self._seeds))
        if not 0 <= seed <= MAX_SEED:  # the stored seed is an int64: it must come back as it was
            raise RecordingError(f"seed {seed} is outside 0..{MAX_SEED}, the range the episode metadata stores")
        self.seed = seed
        self.start_time = time.time()
        observation, _ = self.gym_env.reset(seed=self.seed)
        self.last_info, self.last_raw_info = {}, {}
        self.episode_return, self.episode_steps = 0, 0
        return dm_env.restart(observation)

    def step(self, action: np.ndarray) -> dm_env.TimeStep:
        observation, reward, terminated, truncated, info = self.gym_env.step(np.asarray(action, np.float64))
        self.last_raw_info = info
        self.last_info = info_tristates(self.env_spec, info, terminated, truncated)
        reward = np.int32(reward)
        self.episode_return += int(reward)
        self.episode_steps += 1
        if terminated:
            return dm_env.termination(reward, observation)
        if truncated:
            return dm_env.truncation(reward, observation, discount=np.float32(1.0))
        return dm_env.transition(reward, observation, discount=np.float32(1.0))

    def observation_spec(self) -> specs.Array:
        return specs.Array(self.env_spec.frame_shape, np.uint8, name=schema.OBSERVATION)

    def action_spec(self) -> specs.BoundedArray:
        return specs.BoundedArray((3,), np.float64, schema.ACTION_LOW, schema.ACTION_HIGH, name=schema.ACTION)

    def reward_spec(self) -> specs.Array:
        return specs.Array((), np.int32, name=schema.REWARD)

    def discount_spec(self) -> specs.BoundedArray:
        # envlogger's TFDS backend needs float32 discounts.
        return specs.BoundedArray((), np.float32, 0.0, 1.0, name=schema.DISCOUNT)

    def close(self) -> None:
        self.gym_env.close()


@dataclasses.dataclass
class StepExtras:
    """EnvLogger's `step_fn`: what one logged step carries besides the dm_env TimeStep.

    On a reset (action None) only the wall time; after an action, the
    transition's info tri-states and the keys held when that action was read
    (`keys_held()` returns 4 bools: left, right, up, down).
    """

    keys_held: Callable[[], tuple[bool, bool, bool, bool]] = lambda: (False, False, False, False)

    def __call__(self, timestep: dm_env.TimeStep, action: Any, env: Any) -> dict:
        extras = {schema.WALL_TIME: time.time()}
        if action is not None:
            adapter = _adapter(env)
            extras[schema.INFO] = dict(adapter.last_info)
            extras[schema.KEYS_HELD] = tuple(bool(k) for k in self.keys_held())
        return extras


def _adapter(env: Any) -> DmEnvAdapter:
    while not isinstance(env, DmEnvAdapter):
        env = env._environment  # through envlogger's wrapper
    return env


def episode_metadata_fn(user_id: str, session_id: str) -> Callable[[dm_env.TimeStep, Any, Any], dict]:
    """EnvLogger's `episode_fn`: who, when, where and with which seed (the episode index comes from the writer)."""
    import gymnasium

    versions = {schema.DROPJ_VERSION: package_version(), schema.GYMNASIUM_VERSION: gymnasium.__version__}

    def episode_fn(timestep: dm_env.TimeStep, action: Any, env: Any) -> dict:
        adapter = _adapter(env)
        env_id, mode = ENV_IDS[adapter.env_name]
        return {
            schema.USER_ID_TEXT: user_id,
            schema.SESSION_ID: session_id,
            schema.ENV_ID: env_id,
            schema.ENV_MODE: mode,
            schema.SEED: adapter.seed,
            schema.START_TIME: np.float64(adapter.start_time),
            schema.TIME_LIMIT: adapter.time_limit,
            **versions,
        }

    return episode_fn


def package_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("dropj-rlds")
    except metadata.PackageNotFoundError:
        return "unknown"


def new_session_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


# --- storage -----------------------------------------------------------------------------------------


def dataset_config(spec: RecordingSpec) -> Any:
    """The RLDS DatasetConfig of a recording, with every feature generated from the schema."""
    import tensorflow_datasets as tfds

    from dropj_datasets.builder import HOMEPAGE, features

    feats = features(spec)
    steps = dict(feats[schema.STEPS].feature.items())
    standard = {schema.OBSERVATION, schema.ACTION, schema.REWARD, schema.DISCOUNT, schema.IS_FIRST,
                schema.IS_LAST, schema.IS_TERMINAL}
    return tfds.rlds.rlds_base.DatasetConfig(
        name=spec.config,
        observation_info=steps[schema.OBSERVATION],
        action_info=steps[schema.ACTION],
        reward_info=steps[schema.REWARD],
        discount_info=steps[schema.DISCOUNT],
        step_metadata_info={k: v for k, v in steps.items() if k not in standard},
        episode_metadata_info={schema.EPISODE_METADATA: feats[schema.EPISODE_METADATA]},
        homepage=HOMEPAGE,
        overall_description=spec.description + ".",
    )


def recording_features(spec: RecordingSpec) -> Any:
    """The TFDS features a recording directory is written with (what its features.json must say)."""
    import tensorflow_datasets as tfds

    identity = tfds.core.dataset_info.DatasetIdentity(
        name=schema.RECORDING_DATASET, version=tfds.core.Version(RECORDING_VERSION), data_dir="",
        module_name="", config_name=spec.config, config_description=spec.description)
    return tfds.rlds.rlds_base.build_info(dataset_config(spec), identity).features


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
                 log: Callable[[str], None] = print, **base_kwargs: Any):
        super().__init__(**base_kwargs)
        self._store: Optional[recording_store.RecordingStore] = None  # close() runs from __del__ if opening fails
        self.spec = schema.RECORDINGS[env_name]
        self.session_id = session_id
        self.log = log
        self._store = recording_store.RecordingStore(recording_dir(data_dir, env_name), self.spec,
                                                     holder=f"session {session_id}" if session_id else "", log=log)
        self.episodes_before = self._store.episodes
        self.episodes_written = 0
        self.rescued: list[str] = []
        self._steps: list[step_data.StepData] = []
        self._episode_metadata: dict = {}

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
        steps, self._steps = self._steps, []
        index = self._store.episodes  # the episodes listed on disk decide the number
        example = episode_example(self.spec, steps, self._episode_metadata, index)
        try:
            self._store.append(example)
        except Exception as exc:  # noqa: BLE001 - whatever failed, the episode is kept
            text = str(exc).splitlines()[0][:200] if str(exc) else ""
            why = f"{type(exc).__name__}: {text}"
            try:
                path = self._store.rescue(example, index, self.session_id)
            except RecordingError as again:
                raise RecordingError(f"episode {index} could not be written ({why}) and {again}; it is lost, "
                                     "and the session stops") from None
            self.rescued.append(str(path))
            self.log(f"episode {index} could not be written into {self.directory} ({why}); it is kept in {path}: "
                     f"run `dropj repair-recording {self.directory}` to add it")
            return
        self.episodes_written += 1

    def close(self) -> None:
        self._steps = []
        if self._store is not None:
            self._store.close()
            self._store = None


def episode_example(spec: RecordingSpec, steps: list[step_data.StepData], metadata: dict, index: int) -> dict:
    """One finished episode (its StepData from reset to the LAST step) as the TFDS example.

    The release's transitions are (s_t, a_t, r_t, s_{t+1}, done, info_t); the
    EnvLogger step t+1 holds a_t, r_t, info_t and s_{t+1}, so the columns are
    read off steps 1..T and the observations off steps 0..T.
    """
    if len(steps) < 2 or not steps[0].timestep.first() or not steps[-1].timestep.last():
        raise ValueError(f"an episode needs a FIRST and a LAST step, got {len(steps)} steps")
    transitions = steps[1:]
    info = {key: np.array([s.custom_data[schema.INFO][key] for s in transitions], dtype=np.int8)
            for key in spec.info_keys}
    observations = np.stack([s.timestep.observation for s in steps])
    ep = episodes_lib.Episode(
        observations=observations,
        actions=np.stack([np.asarray(s.action, dtype=np.float64) for s in transitions]),
        actions_scaled=None,
        rewards=np.array([s.timestep.reward for s in transitions], dtype=np.int32),
        info=info,
        final_done=1.0,  # the authors' recorder wrote float(done) = 1.0 on the last transition, always
    )
    rlds_steps = episodes_lib.to_rlds_steps(ep, spec, [png.encode(frame) for frame in observations])
    rlds_steps[schema.WALL_TIME] = np.array([s.custom_data[schema.WALL_TIME] for s in steps], dtype=np.float64)
    rlds_steps[schema.KEYS_HELD] = np.array([s.custom_data[schema.KEYS_HELD] for s in transitions] +
                                            [(False,) * len(schema.KEYS)], dtype=bool)
    meta = {**metadata, schema.EPISODE_INDEX: index, schema.FINAL_DONE: np.float64(ep.final_done),
            schema.PICKLE_PROTOCOL: schema.RECORDED_PICKLE_PROTOCOL}
    return {schema.STEPS: rlds_steps, schema.EPISODE_METADATA: meta}


# --- assembly ----------------------------------------------------------------------------------------


@dataclasses.dataclass
class Recorder:
    """An open recording: the EnvLogger-wrapped environment and its writer."""

    logger: Any  # envlogger.EnvLogger
    adapter: DmEnvAdapter
    writer: RecordingWriter

    def close(self) -> None:
        self.writer.discard_episode()
        self.logger.close()  # closes the environment and the writer


def open_recorder(env_name: str, data_dir: str | os.PathLike, user_id: str, *,
                  session_id: Optional[str] = None, seeds: Optional[Iterator[int]] = None,
                  keys_held: Optional[Callable[[], tuple[bool, bool, bool, bool]]] = None,
                  gym_env: Any = None, log: Callable[[str], None] = print) -> Recorder:
    """Wraps the environment in `envlogger.EnvLogger` with a `RecordingWriter` under `data_dir`."""
    import envlogger

    if env_name not in schema.RECORDINGS:
        raise ValueError(f"unknown environment {env_name!r}; choose one of {sorted(schema.RECORDINGS)}")
    session_id = session_id or new_session_id()
    writer = RecordingWriter(data_dir, env_name, session_id=session_id, log=log)  # locks the directory first
    try:
        adapter = DmEnvAdapter(env_name, gym_env=gym_env, seeds=seeds)
    except BaseException:
        writer.close()
        raise
    extras = StepExtras(keys_held) if keys_held is not None else StepExtras()
    logger = envlogger.EnvLogger(adapter, step_fn=extras, episode_fn=episode_metadata_fn(user_id, session_id),
                                 backend=writer)
    return Recorder(logger, adapter, writer)
