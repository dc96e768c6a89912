"""Legacy transition lists <-> columnar RLDS episodes, validated against the schema.

This is where every alignment and dtype decision of the schema's RLDS
contract (see `dropj_datasets.schema`) is carried out, in one place, in both
directions. Nothing here knows about TFDS.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Any, Callable, Optional, Sequence

import numpy as np

from dropj.converters.store import legacy_pickle
from dropj.converters.store.files import MAX_STEPS_VARIABLE, TIME_LIMIT, max_episode_steps  # noqa: F401 - re-exported
from dropj_datasets import schema
from dropj_datasets.schema import DataError, DatasetSpec, describe

_MAX_REPORTED = 20
_INT32 = np.iinfo(np.int32)
_PLUS_ZERO = struct.pack("<d", 0.0)

def reader_limits(spec: DatasetSpec) -> legacy_pickle.Limits:
    """What `legacy_pickle.iter_list` may let one episode of `spec` hold: its steps, and their bytes."""
    steps = max_episode_steps()
    state_bytes = int(np.prod(spec.observation_shape)) * (8 if spec.is_dream else 1)
    per_step = 2 * state_bytes + 1024  # prev_obs and obs (stored twice by the release), action, info, ...
    default = legacy_pickle.DEFAULT_LIMITS
    return dataclasses.replace(
        default, max_bytes=max(default.max_bytes, steps * per_step),
        max_objects=max(default.max_objects, steps * 64), max_item_length=steps, item_noun="episode",
        length_hint=f"every release episode ends at the environment's time limit of {TIME_LIMIT} steps "
                    f"(set {MAX_STEPS_VARIABLE} to read longer ones)")


@dataclasses.dataclass
class Episode:
    """One episode in columnar form: T transitions, T+1 observations."""

    observations: np.ndarray  # (T+1, *obs_shape): s_0 .. s_T (dream: all float32)
    actions: np.ndarray  # (T, 3) float64 env units; NaN where the source has none
    actions_scaled: Optional[np.ndarray]  # (T, 3) float64, dream only; NaN where absent
    rewards: np.ndarray  # (T,) int32
    info: dict[str, np.ndarray]  # source info key -> (T,) int8 tri-state
    final_done: float  # `done` of the last transition
    initial_state: Optional[np.ndarray] = None  # dream: exact float64 prev_obs of transition 0

    @property
    def num_transitions(self) -> int:
        return len(self.rewards)

    @property
    def is_terminal(self) -> bool:
        """Ended by a real termination rather than the time limit or a cut."""
        truncated = self.info.get(schema.TIME_LIMIT_TRUNCATED)
        cut_by_limit = truncated is not None and truncated[-1] == schema.INFO_TRUE
        return self.final_done == 1.0 and not cut_by_limit


class _Problems:
    """Collects every problem of an episode, so one error reports them all."""

    def __init__(self, file: str, episode: int):
        self.file, self.episode = file, episode
        self.items: list[str] = []

    def add(self, step: Optional[int], field: str, expected: Any, got: Any) -> None:
        self.items.append(
            schema.format_location(self.file, self.episode, step, field) + f": expected {expected}, got {got}")

    def raise_if_any(self) -> None:
        if not self.items:
            return
        shown = self.items[:_MAX_REPORTED]
        more = len(self.items) - len(shown)
        head = shown[0] if len(self.items) == 1 else f"{len(self.items)} problems:\n  " + "\n  ".join(shown)
        raise DataError(head + (f"\n  ... and {more} more" if more else ""))


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"ndarray {value.dtype}{list(value.shape)}"
    return type(value).__name__


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _first_differing_row(a: np.ndarray, b: np.ndarray) -> Optional[int]:
    if a.shape != b.shape or a.ndim == 0:
        return None
    rows = (np.ascontiguousarray(a).view(np.uint8).reshape(len(a), -1)
            != np.ascontiguousarray(b).view(np.uint8).reshape(len(b), -1)).any(axis=1)
    found = np.flatnonzero(rows)
    return int(found[0]) if len(found) else None


def _check_array(problems: _Problems, step: int, field: str, value: Any, dtype: str,
                 shape: tuple[int, ...]) -> bool:
    if not isinstance(value, np.ndarray) or value.dtype != np.dtype(dtype) or value.shape != shape:
        problems.add(step, field, f"ndarray {dtype}{list(shape)}", _describe(value))
        return False
    return True


def from_legacy(transitions: Any, spec: DatasetSpec, *, file: str, episode: int,
                allocate: Callable[[tuple[int, ...], np.dtype], np.ndarray] = np.empty) -> Episode:
    """Validates one legacy episode and converts it; raises one DataError listing every problem.

    `allocate(shape, dtype)` gives the array the observations are written into
    (the build's reader hands out shared memory).
    """
    problems = _Problems(file, episode)
    if not isinstance(transitions, list):
        problems.add(None, "episode", "list of transitions", _describe(transitions))
        problems.raise_if_any()
    if not transitions:
        problems.add(None, "episode", "at least one transition", "an empty list")
        problems.raise_if_any()
    num = len(transitions)
    limit = max_episode_steps()
    if num > limit:
        problems.add(None, "episode", f"at most {limit:,} transitions, the time limit "
                                      f"(set {MAX_STEPS_VARIABLE} to read longer episodes)", f"{num:,}")
        problems.raise_if_any()
    obs_shape = spec.observation_shape
    obs_dtype = spec.step_field(schema.OBSERVATION).dtype  # frames uint8, latent states float32
    observations = allocate((num + 1,) + obs_shape, np.dtype(obs_dtype))
    actions = np.empty((num, 3), dtype=np.float64)
    rewards = np.empty((num,), dtype=np.int32)
    info = {key: np.full((num,), schema.INFO_ABSENT, dtype=np.int8) for key in spec.info_keys}
    allowed_info = set(spec.info_keys)
    initial_state = None
    final_done = 0.0
    previous_obs = None
    for t, item in enumerate(transitions):
        if not isinstance(item, tuple) or len(item) != 6:
            length = len(item) if isinstance(item, (tuple, list, dict, str, bytes)) else "?"
            problems.add(t, "transition", "tuple (prev_obs, action, reward, obs, done, info)",
                         f"{_describe(item)} of length {length}")
            previous_obs = None  # no continuity check across a malformed transition
            continue
        prev_obs, action, reward, obs, done, step_info = item
        # Dream step 0 is float64 (a copy of the initial state), every later state float32.
        prev_dtype = "float64" if spec.is_dream and t == 0 else obs_dtype
        if _check_array(problems, t, "prev_obs", prev_obs, prev_dtype, obs_shape):
            if t == 0:
                if spec.is_dream:
                    initial_state = prev_obs.copy()
                    observations[0] = prev_obs  # the float32 view; the exact value is `initial_state`
                else:
                    observations[0] = prev_obs
            elif previous_obs is not None and not _same_bits(prev_obs, previous_obs):  # NaN is NaN here
                # Frames are stored once; a source where they differ cannot be kept losslessly.
                problems.add(t, "prev_obs", f"identical to obs of step {t - 1}", "a different array")
        if _check_array(problems, t, "action", action, "float64", (3,)):
            actions[t] = action
        if type(reward) is not int:
            problems.add(t, "reward", "Python int", _describe(reward))
        elif not _INT32.min <= reward <= _INT32.max:
            problems.add(t, "reward", "a value within int32", reward)
        else:
            rewards[t] = reward
        if _check_array(problems, t, "obs", obs, obs_dtype, obs_shape):
            observations[t + 1] = obs
            previous_obs = obs
        else:
            previous_obs = None
        if type(done) is not float:
            problems.add(t, "done", "Python float", _describe(done))
        elif t < num - 1 and struct.pack("<d", done) != _PLUS_ZERO:  # -0.0 and NaN are not 0.0 here
            problems.add(t, "done", "0.0 before the last step", repr(done))
        else:
            final_done = done  # kept bit for bit (episode metadata `final_done`)
        if type(step_info) is not dict:  # an OrderedDict or defaultdict would come back as a dict
            problems.add(t, "info", "dict", _describe(step_info))
            continue
        for key, value in step_info.items():
            if key not in allowed_info:
                expected = f"one of {sorted(allowed_info)}" if allowed_info else "an empty dict"
                problems.add(t, f"info['{key}']" if isinstance(key, str) else "info", expected,
                             f"unknown key {describe(key)}")
            elif type(value) is not bool:
                problems.add(t, f"info['{key}']", "bool", _describe(value))
            else:
                info[key][t] = schema.INFO_TRUE if value else schema.INFO_FALSE
    problems.raise_if_any()
    return Episode(observations, actions, None, rewards, info, final_done, initial_state)


def merge_scaled(unscaled: Optional[Episode], scaled: Optional[Episode], *, file: str, episode: int) -> Episode:
    """Joins the env-unit and the scaled dream files, which must agree on everything but actions."""
    if unscaled is None:
        assert scaled is not None
        return dataclasses.replace(scaled, actions=np.full_like(scaled.actions, np.nan),
                                   actions_scaled=scaled.actions)
    if scaled is None:
        return dataclasses.replace(unscaled, actions_scaled=np.full_like(unscaled.actions, np.nan))
    problems = _Problems(file, episode)
    if unscaled.num_transitions != scaled.num_transitions:
        problems.add(None, "length", f"{unscaled.num_transitions} transitions as in the env-unit file",
                     scaled.num_transitions)
        problems.raise_if_any()
    pairs = {"observations": (unscaled.observations, scaled.observations),
             "rewards": (unscaled.rewards, scaled.rewards),
             "initial_state": (unscaled.initial_state, scaled.initial_state)}
    for name, (a, b) in pairs.items():
        if not _same_bits(a, b):  # bit for bit: a NaN latent present in both files is the same
            problems.add(_first_differing_row(a, b), name, "the same as in the env-unit file", "different values")
    if struct.pack("<d", unscaled.final_done) != struct.pack("<d", scaled.final_done):
        problems.add(unscaled.num_transitions - 1, "done", unscaled.final_done, scaled.final_done)
    problems.raise_if_any()
    return dataclasses.replace(unscaled, actions_scaled=scaled.actions)


def to_legacy(ep: Episode, spec: DatasetSpec, *, scaled: bool = False) -> list[tuple]:
    """The release's transition list, with the source's Python types and dtypes."""
    actions = ep.actions_scaled if scaled else ep.actions
    if actions is None:
        raise DataError(f"this episode has no {'scaled' if scaled else 'env-unit'} actions")
    # Which action columns exist is decided by the dataset's metadata (the source files it was
    # built from), never by the values: an episode whose actions are all NaN is exported as such.
    keys = [key for key in spec.info_keys]
    out = []
    last = ep.num_transitions - 1
    for t in range(ep.num_transitions):
        if spec.is_dream and t == 0:
            prev_obs = np.array(ep.initial_state, dtype=np.float64)
        else:
            prev_obs = np.array(ep.observations[t])
        step_info = {}
        for key in keys:
            value = ep.info[key][t]
            if value != schema.INFO_ABSENT:
                step_info[key] = bool(value == schema.INFO_TRUE)
        out.append((prev_obs, np.array(actions[t], dtype=np.float64), int(ep.rewards[t]),
                    np.array(ep.observations[t + 1]), float(ep.final_done) if t == last else 0.0, step_info))
    return out


def to_rlds_steps(ep: Episode, spec: DatasetSpec, observations: Optional[Sequence[Any]] = None) -> dict:
    """The TFDS `steps` value (T+1 steps; see the schema's alignment contract).

    `observations` may replace the observation column with pre-encoded values
    (PNG bytes of each frame).
    """
    num = ep.num_transitions
    terminal = ep.is_terminal

    def padded(column: np.ndarray, pad_value: float) -> np.ndarray:
        pad = np.full((1,) + column.shape[1:], pad_value, dtype=column.dtype)
        if np.isnan(column).all() if column.dtype.kind == "f" else False:
            pad[:] = np.nan  # an absent action column stays absent on the padding step too
        return np.concatenate([column, pad])

    steps = {
        schema.OBSERVATION: ep.observations if observations is None else observations,
        schema.ACTION: padded(ep.actions, 0.0),
        schema.REWARD: np.concatenate([ep.rewards, np.zeros((1,), np.int32)]),
        schema.DISCOUNT: np.ones((num + 1,), np.float32),
        schema.IS_FIRST: np.arange(num + 1) == 0,
        schema.IS_LAST: np.arange(num + 1) == num,
        schema.IS_TERMINAL: (np.arange(num + 1) == num) & terminal,
    }
    if terminal:
        steps[schema.DISCOUNT][num] = 0.0
    if spec.is_dream:
        steps[schema.ACTION_SCALED] = padded(ep.actions_scaled, 0.0)
    if spec.info_keys:
        steps[schema.INFO] = {
            schema.INFO_FEATURE_NAMES[key]: np.concatenate([ep.info[key], [schema.INFO_ABSENT]]).astype(np.int8)
            for key in spec.info_keys
        }
    return steps


def from_rlds_steps(steps: dict, metadata: dict, spec: DatasetSpec) -> Episode:
    """Inverse of `to_rlds_steps` on decoded (numpy) steps."""
    observations = np.asarray(steps[schema.OBSERVATION])
    info = {key: np.asarray(steps[schema.INFO][schema.INFO_FEATURE_NAMES[key]])[:-1].astype(np.int8)
            for key in spec.info_keys}
    actions_scaled = np.asarray(steps[schema.ACTION_SCALED])[:-1] if spec.is_dream else None
    initial_state = np.asarray(metadata[schema.INITIAL_STATE], dtype=np.float64) if spec.is_dream else None
    return Episode(
        observations=observations,
        actions=np.asarray(steps[schema.ACTION], dtype=np.float64)[:-1],
        actions_scaled=actions_scaled,
        rewards=np.asarray(steps[schema.REWARD], dtype=np.int32)[:-1],
        info=info,
        final_done=float(metadata[schema.FINAL_DONE]),
        initial_state=initial_state,
    )


def compare(source: Any, exported: Any, path: str = "") -> list[str]:
    """Exact differences between two legacy objects: nesting, Python types, dtypes, bits.

    Dict key order is not compared (Python dict equality ignores it); every
    key, its value and the value's type are.
    """
    where = path or "<root>"
    if type(source) is not type(exported):
        return [f"{where}: type {type(source).__name__} != {type(exported).__name__}"]
    if isinstance(source, np.ndarray):
        if source.dtype != exported.dtype or source.shape != exported.shape:
            return [f"{where}: {_describe(source)} != {_describe(exported)}"]
        if source.tobytes() != exported.tobytes():
            bad = int(np.count_nonzero(source.view(np.uint8) != exported.view(np.uint8)))
            return [f"{where}: values differ ({bad} bytes)"]
        return []
    if isinstance(source, (list, tuple)):
        if len(source) != len(exported):
            return [f"{where}: length {len(source)} != {len(exported)}"]
        out: list[str] = []
        for i, (a, b) in enumerate(zip(source, exported)):
            out += compare(a, b, f"{path}[{i}]")
            if len(out) > _MAX_REPORTED:
                break
        return out
    if isinstance(source, dict):
        if set(source) != set(exported):
            only = [describe(k, 40) for k in list(set(source) ^ set(exported))[:5]]
            return [f"{where}: keys differ ({len(source)} vs {len(exported)}; e.g. {', '.join(only)})"]
        out = []
        for key in source:
            out += compare(source[key], exported[key], f"{path}[{describe(key, 40)}]")
            if len(out) > _MAX_REPORTED:
                break
        return out
    if isinstance(source, float):
        same = struct.pack("<d", source) == struct.pack("<d", exported)
        return [] if same else [f"{where}: {describe(source)} != {describe(exported)}"]
    return [] if source == exported else [f"{where}: {describe(source)} != {describe(exported)}"]
