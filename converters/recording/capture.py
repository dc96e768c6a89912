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
  `store.RecordingStore`, the one place that writes the directory.
  Steps are those of the release's `real` configs, aligned exactly as the
  builders align them (the same `episodes.to_rlds_steps`), plus the
  recording's step and episode metadata, all with features generated from
  `schema.RECORDINGS` (a test compares them with the builders').

Nothing lost (`store/shards.py` says how): one recorder per directory; each
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
from typing import Any, Callable, Iterator, Optional

import dm_env
import numpy as np
from dm_env import specs

from dropj.converters.recording import store as recording_store
from dropj.converters.recording.writer import RecordingWriter
from dropj.converters.recording.store import RecordingError
from dropj_datasets import package_version, schema
from dropj_datasets.schema import RecordingSpec

MAX_SEED = 2**63 - 1  # the `seed` feature is int64
SPLIT = recording_store.SPLIT


recording_dir = recording_store.recording_dir


def recording_spec(env_name: str) -> RecordingSpec:
    """The recording config: an environment's name ('carracing', ...), or its dream ('carracing_dream', ...)."""
    configs = schema.WRITTEN[schema.RECORDING_DATASET]
    if env_name not in configs:
        raise ValueError(f"unknown environment {env_name!r}; choose one of {sorted(configs)}")
    return configs[env_name]


def make_env(env_name: str, max_steps: Optional[int] = None, **dream: Any) -> Any:
    """The gymnasium environment of a recording config, with its TimeLimit (default: the study's 1000 steps).

    A dream config (`carracing_dream`, ...) is `DropjDream-v0` of that world; `dream` gives its `mdnrnn`,
    `vae` and `init_states` (see `dropj.models.dream`).
    """
    import gymnasium

    import dropj_datasets.envs  # noqa: F401  (registers the ids)

    spec = recording_spec(env_name)
    if spec.is_dream:
        return gymnasium.make(dropj_datasets.envs.DREAM_ID, max_episode_steps=max_steps, disable_env_checker=True,
                              env=spec.env.name, **dream)
    env = spec.env
    return gymnasium.make(env.gym_id, max_episode_steps=max_steps, disable_env_checker=True, **env.make_kwargs)


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
        self.spec = recording_spec(env_name)
        self.env_spec = self.spec.env
        self.initial_state: Optional[np.ndarray] = None  # a dream's exact float64 start state
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
        self._prepared: Optional[np.ndarray] = None  # the observation of a track `prepare` made ready

    def prepare(self) -> None:
        """Makes the next episode's track ready without starting its episode: draws its seed and resets the
        environment, so a driver can see the track before the clock runs (`dropj record --web` waits for the
        first key). The next `reset()` starts the episode from this very state, untouched in between: its
        `start_time`, and step 0's wall time, are those of that `reset()`, not of this one."""
        self._prepared = self._reset_env()

    def reset(self) -> dm_env.TimeStep:
        observation = self._prepared if self._prepared is not None else self._reset_env()
        self._prepared = None
        self.start_time = time.time()
        self.last_info, self.last_raw_info = {}, {}
        self.episode_return, self.episode_steps = 0, 0
        return dm_env.restart(observation)

    def _reset_env(self) -> np.ndarray:
        seed = int(next(self._seeds))
        if not 0 <= seed <= MAX_SEED:  # the stored seed is an int64: it must come back as it was
            raise RecordingError(f"seed {seed} is outside 0..{MAX_SEED}, the range the episode metadata stores")
        self.seed = seed
        observation, info = self.gym_env.reset(seed=self.seed)
        self.initial_state = info.get("initial_state") if self.spec.is_dream else None
        return observation

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
        if self.spec.is_dream:
            return specs.Array((self.env_spec.latent_dim,), np.float32, name=schema.OBSERVATION)
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

    adapter: DmEnvAdapter
    keys_held: Callable[[], tuple[bool, bool, bool, bool]] = lambda: (False, False, False, False)

    def __call__(self, timestep: dm_env.TimeStep, action: Any, env: Any) -> dict:
        extras = {schema.WALL_TIME: time.time()}
        if action is not None:
            extras[schema.INFO] = dict(self.adapter.last_info)
            extras[schema.KEYS_HELD] = tuple(bool(k) for k in self.keys_held())
        return extras


def episode_metadata_fn(adapter: DmEnvAdapter, user_id: str,
                        session_id: str) -> Callable[[dm_env.TimeStep, Any, Any], dict]:
    """EnvLogger's `episode_fn`: who, when, where and with which seed (the episode index comes from the writer).

    It reads the adapter it is given, not the `env` EnvLogger passes, so no wrapper's internals are touched.
    """
    import gymnasium

    versions = {schema.DROPJ_VERSION: package_version(), schema.GYMNASIUM_VERSION: gymnasium.__version__}
    env = adapter.env_spec
    import dropj_datasets.envs  # noqa: F401  (the dream's id)

    env_id = dropj_datasets.envs.DREAM_ID if adapter.spec.is_dream else env.gym_id
    mode = env.name if adapter.spec.is_dream else env.mode  # a dream names the world it dreams

    def episode_fn(timestep: dm_env.TimeStep, action: Any, _: Any) -> dict:
        extra = {schema.INITIAL_STATE: np.asarray(adapter.initial_state, np.float64)} if adapter.spec.is_dream else {}
        return {
            **extra,
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




def new_session_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


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
                  gym_env: Any = None, log: Callable[[str], None] = print,
                  store: Optional[recording_store.RecordingStore] = None) -> Recorder:
    """Wraps the environment in `envlogger.EnvLogger` with a `RecordingWriter` under `data_dir`.

    `store`: an open `RecordingStore` this session shares with others of the same process (each with
    its own environment, EnvLogger and user); by default the session opens, and locks, its own."""
    import envlogger

    recording_spec(env_name)  # a clear error for an unknown name, before anything is opened
    session_id = session_id or new_session_id()
    writer = RecordingWriter(data_dir, env_name, session_id=session_id, log=log, store=store)  # locks it first
    try:
        adapter = DmEnvAdapter(env_name, gym_env=gym_env, seeds=seeds)
    except BaseException:
        writer.close()
        raise
    extras = StepExtras(adapter, keys_held) if keys_held is not None else StepExtras(adapter)
    logger = envlogger.EnvLogger(adapter, step_fn=extras, episode_fn=episode_metadata_fn(adapter, user_id, session_id),
                                 backend=writer)
    return Recorder(logger, adapter, writer)
