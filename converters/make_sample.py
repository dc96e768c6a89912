"""Writes the embedded sample of the release: tiny real-format copies of every rollout file.

The two TFDS dataset packages keep a `dummy_data/` folder that the builder
tests use as their manual directory. This script fills it with one small file
per release rollout file, in exactly the release's on-disk format
(docs: DATA_FORMATS.md sections 0-3), laid out as the release ships them:

    dropj_carracing/dummy_data/
        carracing_rollouts.zip            raw_user_rollouts_res84_ep600.pkl (Dataset R, protocol 5)
        extracted/dream_user_rollouts.pkl, dream_user_rollouts_scaled.pkl   (Dataset D, protocol 4)
        extracted/default_init_obs.pkl                                      (protocol 4, one array)
    dropj_obst_carracing/dummy_data/
        obst_rollouts.zip (Zip64 records) raw_user_rollouts_res128_ep600_chuckcobst.pkl,
                                          raw_user_rollouts_res128_ep800_chuckccarobst.pkl (protocol 5)
        extracted/dream_user_rollouts_{m}obst.pkl, ..._{m}obst_scaled.pkl   (protocol 4)
        extracted/default_init_obses_{m}obst.pkl (protocol 5, list), default_init_obs_{m}obst.pkl (protocol 4)

Why it is shortened. The release holds 600-800 real episodes of 1000 steps
(25-79 GB) and dream files of 10-60 episodes of 1000 steps. The sample keeps a
few episodes of 8-40 transitions, so that all files together stay under about
3 MB and are generated in seconds. Everything else is as in the release: the
types, dtypes, shapes, pickle protocols, info keys and their order, the
`deepcopy`'d tuples (so `obs_t` and `prev_obs_{t+1}` are equal but distinct
objects), the float64 step-0 dream state, and each way an episode can end.

Where the data comes from.
* Real frames are rendered by gymnasium `CarRacing-v3` (seeded, scripted
  keyboard-like driver), at 96x96 and processed as the release for Car
  Racing, natively at 128x128 and passed through for Obstacle. Its rendering
  differs from the authors' gym 0.20 one (DATA_FORMATS.md 8.1), it keeps its
  indicator bar at 128x128, and it draws no chuckholes or NPC cars, so the
  obstacle flags are synthesised: the sample is a format fixture, not data.
* The first Car Racing episode starts at the reset frame like the release's
  (zoom-in frames, white outside the field); every other one skips the
  50-step zoom-in so that its few frames show ordinary driving.
* Episode endings (time limit, leaving the playfield) are declared on the
  last step, as no sample episode is long enough to reach them (`_ending`).
* Dream states come from a tiny numpy MDN-RNN with seeded random weights that
  follows the release's dream dynamics (DATA_FORMATS.md 0.2 and 2).

Deterministic: the same bytes on every run on one machine (fixed seeds, fixed
zip timestamps and attributes). Run it as `python -m dropj.converters.make_sample`.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import io
import pickle
import zipfile
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from dropj_datasets import schema
from dropj_datasets.schema import EnvSpec

Transition = tuple[np.ndarray, np.ndarray, int, np.ndarray, float, dict]
Episode = list[Transition]

CARRACING_DATASET = "dropj_carracing"
OBST_DATASET = "dropj_obst_carracing"
DUMMY_DATA = "dummy_data"
EXTRACTED = "extracted"  # the release's plain .pkl files sit beside its zip archives
CARRACING_ZIP = "carracing_rollouts.zip"
OBST_ZIP = "obst_rollouts.zip"

# Release protocols (DATA_FORMATS.md 0.4): raw rollouts and init-state lists 5,
# dream rollouts and the single-array default_init_obs files 4.
RAW_PROTOCOL = 5
DREAM_PROTOCOL = 4
INIT_OBS_PROTOCOL = 4
INIT_OBSES_PROTOCOL = 5

# Fixed zip metadata, so archives are byte-identical between runs.
_ZIP_DATE_TIME = (2024, 1, 1, 0, 0, 0)
_ZIP_UNIX_MODE = 0o644 << 16
_ZIP_CREATE_SYSTEM = 3  # Unix, whatever machine writes it

# The first second of an episode is a zoom-in animation (50 steps at 50 FPS).
ZOOM_STEPS = 50
CARRACING_RAW_SIZE = 96
OBST_RAW_SIZE = 128
CARRACING_CROP_ROWS = 84  # removes the indicator bar (DATA_FORMATS.md 1.2)

# The keyboard subset of actions (DATA_FORMATS.md 0.3), env units.
STEER_LEFT, STEER_RIGHT = -1.0, 1.0
GAS = 1.0
BRAKE = 0.8

# Reward rule of the DROPJ envs (DATA_FORMATS.md 8.1): Python ints.
CRASH_REWARD, SUCC_REWARD, NO_REWARD = -1, 10, 0
CRASH, SUCC = "crash", "succ"

# How an episode ends (DATA_FORMATS.md 1.3-1.4).
TIME_LIMIT = "time_limit"  # cut at step 1000: done 1.0, TimeLimit.truncated True
LEFT_PLAYFIELD = "left_playfield"  # real termination: done 1.0, {'crash': True}, reward -1
LEFT_PLAYFIELD_AT_LIMIT = "left_playfield_at_limit"  # both at step 1000: TimeLimit.truncated False
ENDINGS = (TIME_LIMIT, LEFT_PLAYFIELD, LEFT_PLAYFIELD_AT_LIMIT)


# --- plans: what to generate ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RealEpisodePlan:
    """One real-env episode of the sample.

    `warmup` env steps are driven but not recorded: 0 starts at the reset
    frame as the release does (zoom-in frames, black outside the field);
    `ZOOM_STEPS` starts after the zoom-in, with typical driving frames.
    `veer_from` makes the driver hold full right steer with gas from that env
    step on (counted from the reset, warm-up included), so the car runs
    off the road and 'crash' steps appear. `events` maps a transition index to
    synthetic obstacle flags set True on that step.
    """

    seed: int
    length: int
    ending: str
    warmup: int = 0
    veer_from: Optional[int] = None
    events: tuple[tuple[int, str], ...] = ()

    def __post_init__(self) -> None:
        if self.ending not in ENDINGS:
            raise ValueError(f"ending must be one of {ENDINGS}, got {self.ending!r}")
        if self.length < 1 or self.warmup < 0:
            raise ValueError(f"need length >= 1 and warmup >= 0, got {self.length}, {self.warmup}")
        for step, _ in self.events:
            if not 0 <= step < self.length:
                raise ValueError(f"event at transition {step} is outside 0..{self.length - 1}")

    def veers(self, env_step: int) -> bool:
        return self.veer_from is not None and env_step >= self.veer_from


@dataclasses.dataclass(frozen=True)
class DreamPlan:
    """The dream files of one environment: world model size, episodes and start states."""

    env: EnvSpec
    mixtures: int  # K of the MDN head (DATA_FORMATS.md 0.1)
    seed: int
    episodes: int
    length: int  # transitions per episode; the release has exactly 1000
    init_steps: tuple[int, ...]  # encoding-pass steps that become default_init_obses (empty: none)
    init_step: int  # encoding-pass step that becomes default_init_obs

    def __post_init__(self) -> None:
        if self.mixtures < 1 or self.episodes < 1 or self.length < 1:
            raise ValueError("mixtures, episodes and length must be >= 1")


# Car Racing Dataset R: the three episode endings (the release's are 1000 steps; see the module docstring).
# Episode 0 starts at the reset frame like the release; the others skip the zoom-in.
CARRACING_REAL = (
    RealEpisodePlan(seed=11, length=40, ending=TIME_LIMIT, warmup=0, veer_from=5),
    RealEpisodePlan(seed=12, length=25, ending=LEFT_PLAYFIELD, warmup=ZOOM_STEPS, veer_from=55),
    RealEpisodePlan(seed=13, length=12, ending=LEFT_PLAYFIELD_AT_LIMIT, warmup=ZOOM_STEPS, veer_from=40),
)
# Obstacle Dataset R: one truncated and one terminated episode per mode. Flags are
# synthetic ('approached' first, then 'touched' a few steps later).
OBST_REAL = {
    schema.CHUCKC.name: (
        RealEpisodePlan(seed=21, length=14, ending=TIME_LIMIT, warmup=ZOOM_STEPS, veer_from=40,
                        events=((2, "chuck_passed"), (5, "chuck"))),
        RealEpisodePlan(seed=22, length=11, ending=LEFT_PLAYFIELD, warmup=ZOOM_STEPS, veer_from=40,
                        events=((1, "chuck_passed"), (5, "chuck"))),
    ),
    schema.CHUCKCCAR.name: (
        RealEpisodePlan(seed=31, length=13, ending=LEFT_PLAYFIELD, warmup=ZOOM_STEPS, veer_from=40,
                        events=((2, "chuck_passed"), (4, "car_passed"), (6, "chuck"), (8, "car"))),
        RealEpisodePlan(seed=32, length=12, ending=TIME_LIMIT, warmup=ZOOM_STEPS,
                        events=((1, "car_passed"), (3, "chuck_passed"), (5, "car"), (8, "chuck"))),
    ),
}
# Dream files: 20 (Car Racing) and 8 (Obstacle) transitions instead of 1000, 2 episodes
# instead of 10 / 60, and 3 start states instead of the release's 60.
CARRACING_DREAM = DreamPlan(schema.CARRACING, mixtures=5, seed=101, episodes=2, length=20,
                            init_steps=(), init_step=50)
OBST_DREAM = {
    schema.CHUCKC.name: DreamPlan(schema.CHUCKC, mixtures=7, seed=201, episodes=2, length=8,
                                  init_steps=(100, 200, 300), init_step=50),
    schema.CHUCKCCAR.name: DreamPlan(schema.CHUCKCCAR, mixtures=7, seed=301, episodes=2, length=8,
                                     init_steps=(100, 200, 300), init_step=50),
}


# --- real episodes: gymnasium CarRacing -------------------------------------------------------------


def process_frame(frame: np.ndarray) -> np.ndarray:
    """The release's frame processing (DATA_FORMATS.md 1.2).

    Car Racing, (96, 96, 3) uint8: crop rows 0:84 -> LANCZOS resize to 84x84
    -> pure black (0, 0, 0) set to white, so the result never holds a black
    pixel. Any other height (the 128x128 obstacle frames) passes unchanged.
    """
    if frame.shape[0] != CARRACING_RAW_SIZE:
        return np.array(frame, dtype=np.uint8)
    from PIL import Image

    height, width, _ = schema.CARRACING.frame_shape
    cropped = Image.fromarray(np.ascontiguousarray(frame[:CARRACING_CROP_ROWS]))
    out = np.array(cropped.resize((width, height), Image.LANCZOS), dtype=np.uint8)
    out[np.all(out == 0, axis=-1)] = 255
    return out


@contextlib.contextmanager
def _state_pixels(size: int) -> Iterator[None]:
    """Makes gymnasium CarRacing render its state at size x size, restoring the default after.

    The obstacle env rendered 128x128 natively; gymnasium reads these module
    constants at every render, so patching them renders true 128x128 frames
    (no resampling). Unlike the obstacle env, gymnasium still draws its
    indicator bar into the state.
    """
    from gymnasium.envs.box2d import car_racing

    saved = car_racing.STATE_W, car_racing.STATE_H
    car_racing.STATE_W = car_racing.STATE_H = size
    try:
        yield
    finally:
        car_racing.STATE_W, car_racing.STATE_H = saved


def make_env() -> Any:
    import gymnasium

    return gymnasium.make("CarRacing-v3", disable_env_checker=True)


def keyboard_action(car_racing: Any, veer: bool) -> np.ndarray:
    """A scripted 'human at the keyboard': full left/right/none, gas on/off, brake 0.8.

    Aims at a track point a few tiles ahead of the nearest one; `veer` holds
    full right steer with gas, which takes the car off the road.
    """
    if veer:
        return np.array([STEER_RIGHT, GAS, 0.0], dtype=np.float64)
    car = car_racing.car
    x, y = car.hull.position
    track = np.array([(tx, ty) for _, _, tx, ty in car_racing.track])
    nearest = int(np.argmin(np.hypot(track[:, 0] - x, track[:, 1] - y)))
    tx, ty = track[(nearest + 4) % len(track)]
    forward = car.hull.GetWorldVector((0.0, 1.0))
    cross = forward[0] * (ty - y) - forward[1] * (tx - x)  # > 0: the target is to the left
    dot = forward[0] * (tx - x) + forward[1] * (ty - y)
    bearing = np.arctan2(cross, dot)
    steer = STEER_LEFT if bearing > 0.15 else STEER_RIGHT if bearing < -0.15 else 0.0
    speed = float(np.hypot(*car.hull.linearVelocity))
    if speed > 45.0:
        return np.array([steer, 0.0, BRAKE], dtype=np.float64)
    return np.array([steer, GAS if speed < 30.0 else 0.0, 0.0], dtype=np.float64)


def off_road(car_racing: Any) -> bool:
    # The DROPJ env tracks `off_road` from wheel/tile contacts (DATA_FORMATS.md 1.3);
    # gymnasium does not, so approximate it: some wheel touches no road tile.
    return any(len(wheel.tiles) == 0 for wheel in car_racing.car.wheels)


def _info(env: EnvSpec, flags: set[str], truncated: Optional[bool] = None) -> dict:
    """The step's info dict: env keys in the env's order (present only when True), TimeLimit last."""
    info = {key: True for key in env.info_keys if key in flags and key != schema.TIME_LIMIT_TRUNCATED}
    if truncated is not None:
        info[schema.TIME_LIMIT_TRUNCATED] = truncated
    return info


def step_flags(crashed: bool, new_tile: bool) -> tuple[int, set[str]]:
    """The DROPJ reward rule: -1 with 'crash' off-road, else +10 with 'succ' on a new tile, else 0."""
    if crashed:
        return CRASH_REWARD, {CRASH}
    if new_tile:
        return SUCC_REWARD, {SUCC}
    return NO_REWARD, set()


def _ending(plan: RealEpisodePlan, reward: int, flags: set[str]) -> tuple[int, set[str], Optional[bool]]:
    """Reward, flags and TimeLimit.truncated of the last transition.

    The sample's episodes are far shorter than the 1000-step limit and never
    leave the 333-unit playfield, so the ending is declared on the last step:
    * TIME_LIMIT: the step keeps its own reward and crash/succ flag and gains
      TimeLimit.truncated=True (an RLDS truncation, not a termination).
    * LEFT_PLAYFIELD: out of bounds counts as a crash (reward -1) and ends the
      episode: a real termination, no TimeLimit key.
    * LEFT_PLAYFIELD_AT_LIMIT: both at once; gym's TimeLimit then writes
      `not done_env`, i.e. TimeLimit.truncated=False, so it stays terminal.
    """
    if plan.ending == TIME_LIMIT:
        return reward, flags, True
    obstacle_flags = flags - {CRASH, SUCC}
    truncated = False if plan.ending == LEFT_PLAYFIELD_AT_LIMIT else None
    return CRASH_REWARD, obstacle_flags | {CRASH}, truncated


def record_real_episode(plan: RealEpisodePlan, env: EnvSpec, raw_size: int) -> Episode:
    """Drives gymnasium CarRacing-v3 and records the release's transition list."""
    events: dict[int, set[str]] = {}
    for step, flag in plan.events:
        if flag not in env.info_keys:
            raise ValueError(f"{env.name} has no info key {flag!r}; it has {env.info_keys}")
        events.setdefault(step, set()).add(flag)
    with _state_pixels(raw_size):
        gym_env = make_env()
        try:
            frame, _ = gym_env.reset(seed=plan.seed)
            car_racing = gym_env.unwrapped
            for env_step in range(plan.warmup):
                frame, *_ = gym_env.step(keyboard_action(car_racing, plan.veers(env_step)))
            prev_obs = process_frame(frame)
            episode: Episode = []
            for t in range(plan.length):
                action = keyboard_action(car_racing, plan.veers(plan.warmup + t))
                tiles_before = car_racing.tile_visited_count
                frame, *_ = gym_env.step(action)
                obs = process_frame(frame)
                # A new tile this step: the DROPJ env's test, and the same as gymnasium's step reward > 0.
                new_tile = car_racing.tile_visited_count > tiles_before
                reward, flags = step_flags(off_road(car_racing), new_tile)
                flags |= events.get(t, set())
                truncated = None
                last = t == plan.length - 1
                if last:
                    reward, flags, truncated = _ending(plan, reward, flags)
                done = 1.0 if last else 0.0
                # As the authors' recorder: deepcopy the tuple, so obs_t and
                # prev_obs_{t+1} are equal in value but separate objects.
                episode.append(copy.deepcopy((prev_obs, action, reward, obs, done, _info(env, flags, truncated))))
                prev_obs = obs
        finally:
            gym_env.close()
    return episode


# --- dream episodes: a tiny MDN-RNN --------------------------------------------------------------


# Weight scale of the random LSTM: with 3 / sqrt(fan_in) the gates saturate
# enough that c and h reach ranges like the release's real states (c about
# +-5..9, h within +-0.96; DATA_FORMATS.md 3).
_LSTM_GAIN = 3.0


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return np.float32(1.0) / (np.float32(1.0) + np.exp(-v))


class TinyWorldModel:
    """An MDN-RNN with seeded random weights, float32 as in the authors' torch model.

    LSTMCell: input [z (n_z), action (3, env units)], hidden `rnn_size`.
    MDN head: for each latent dimension, K mixtures of (logmix, mean, logstd)
    computed from the new hidden state. Shapes are those of the release;
    weights are random, so the states are plausible in range only.
    """

    def __init__(self, env: EnvSpec, mixtures: int, seed: int):
        rng = np.random.default_rng(seed)
        self.env, self.mixtures = env, mixtures
        n_in = env.n_z + 3 + env.rnn_size
        self.lstm_w = (rng.standard_normal((4 * env.rnn_size, n_in), dtype=np.float32)
                       * np.float32(_LSTM_GAIN / np.sqrt(n_in)))
        self.lstm_b = np.zeros(4 * env.rnn_size, np.float32)
        self.lstm_b[env.rnn_size:2 * env.rnn_size] = 1.0  # forget-gate bias, as is customary
        self.mdn_w = (rng.standard_normal((env.n_z * 3 * mixtures, env.rnn_size), dtype=np.float32)
                      / np.float32(np.sqrt(env.rnn_size)))
        self.mdn_b = np.zeros((env.n_z, 3, mixtures), np.float32)
        self.mdn_b[:, 2] = -1.0  # logstd around -1: std about 0.37

    def lstm(self, z: np.ndarray, action: np.ndarray, c: np.ndarray,
             h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(c, h) after consuming [z, action]; all float32 (rnn_size,)."""
        x = np.concatenate([z, action.astype(np.float32), h])
        i, f, g, o = np.split(self.lstm_w @ x + self.lstm_b, 4)
        c_next = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        return c_next, _sigmoid(o) * np.tanh(c_next)

    def sample_z(self, h: np.ndarray, rng: np.random.Generator, temperature: float = 1.0) -> np.ndarray:
        """z ~ MDN(h) as in DATA_FORMATS.md 2: per dimension a mixture k ~ softmax(logmix / T),
        then mean_k + exp(logstd_k) * N(0, 1) * sqrt(T)."""
        out = (self.mdn_w @ h).reshape(self.env.n_z, 3, self.mixtures) + self.mdn_b
        logmix, mean, logstd = out[:, 0], out[:, 1], out[:, 2]
        logits = (logmix - logmix.max(axis=1, keepdims=True)) / np.float32(temperature)
        probs = np.exp(logits.astype(np.float64))
        probs /= probs.sum(axis=1, keepdims=True)
        picks = (rng.random((self.env.n_z, 1)) > probs.cumsum(axis=1)).sum(axis=1).clip(0, self.mixtures - 1)
        rows = np.arange(self.env.n_z)
        noise = rng.standard_normal(self.env.n_z).astype(np.float32)
        return (mean[rows, picks] + np.exp(logstd[rows, picks]) * noise
                * np.float32(np.sqrt(temperature))).astype(np.float32)

    def split(self, state: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """z|c|h (DATA_FORMATS.md 0.2) as float32 pieces."""
        n_z, rnn = self.env.n_z, self.env.rnn_size
        state = state.astype(np.float32)
        return state[:n_z], state[n_z:n_z + rnn], state[n_z + rnn:]


def _keyboard_actions(rng: np.random.Generator, length: int) -> list[np.ndarray]:
    """Keyboard-like env-unit actions: a key combination held for a few steps."""
    combos = ((0.0, GAS, 0.0), (STEER_LEFT, GAS, 0.0), (STEER_RIGHT, GAS, 0.0), (0.0, 0.0, 0.0),
              (STEER_LEFT, 0.0, 0.0), (STEER_RIGHT, 0.0, 0.0), (0.0, 0.0, BRAKE))
    actions: list[np.ndarray] = []
    while len(actions) < length:
        combo = combos[int(rng.integers(len(combos)))]
        actions += [np.array(combo, dtype=np.float64) for _ in range(int(rng.integers(2, 7)))]
    return actions[:length]


def encode_initial_states(model: TinyWorldModel, steps: Sequence[int], seed: int) -> list[np.ndarray]:
    """Stand-ins for the RNN-encoded real states default_init_obs* are taken from (DATA_FORMATS.md 3).

    One encoding pass from a zero LSTM state: z_t plays the VAE posterior mean
    (a third of the dimensions collapsed near 0), (c_t, h_t) the LSTM state
    after [z_0, a_0] .. [z_{t-1}, a_{t-1}]. Returns [z_t | c_t | h_t] at each
    requested step as float64 holding float32 values, like the release.
    """
    rng = np.random.default_rng(seed)
    env = model.env
    scales = np.where(rng.random(env.n_z) < 1 / 3, 0.02, rng.uniform(0.3, 1.0, env.n_z)).astype(np.float32)
    c = np.zeros(env.rnn_size, np.float32)
    h = np.zeros(env.rnn_size, np.float32)
    wanted = set(steps)
    found: dict[int, np.ndarray] = {}
    actions = _keyboard_actions(rng, max(steps) + 1)
    for t in range(max(steps) + 1):
        z = (rng.standard_normal(env.n_z).astype(np.float32) * scales).astype(np.float32)
        if t in wanted:
            found[t] = np.concatenate([z, c, h]).astype(np.float64)
        c, h = model.lstm(z, actions[t], c, h)
    return [found[t] for t in steps]


def dream_episode(model: TinyWorldModel, initial_state: np.ndarray, length: int, seed: int) -> Episode:
    """One DreamEnv episode (DATA_FORMATS.md 2.1).

    Step 0's prev_obs is a float64 copy of the start state; every later
    state is the model's float32 output. reward 0, done 0.0 and info {}
    always: a dream episode never terminates, it just stops (the release's
    run 1000 steps; the sample's `length`).
    """
    rng = np.random.default_rng(seed)
    prev_obs = np.array(initial_state, dtype=np.float64, copy=True)
    episode: Episode = []
    for action in _keyboard_actions(rng, length):
        z, c, h = model.split(prev_obs)
        c, h = model.lstm(z, action, c, h)
        obs = np.concatenate([model.sample_z(h, rng), c, h]).astype(np.float32)
        episode.append(copy.deepcopy((prev_obs, action, 0, obs, 0.0, {})))
        prev_obs = obs
    return episode


def scaled_episodes(episodes: list[Episode]) -> list[Episode]:
    """The `_scaled` file: every action replaced by its scaled form, nothing else changed."""
    return [[(t[0], schema.scale_action(t[1]).astype(np.float64)) + t[2:] for t in episode]
            for episode in episodes]


@dataclasses.dataclass
class DreamSample:
    episodes: list[Episode]
    init_obs: np.ndarray  # default_init_obs*: one (latent_dim,) float64 state
    init_obses: list[np.ndarray]  # default_init_obses*: the start states, cycled per episode


def make_dream_sample(plan: DreamPlan) -> DreamSample:
    """Start states and dream episodes; episode i starts from init_obses[i % n] (or init_obs)."""
    model = TinyWorldModel(plan.env, plan.mixtures, plan.seed)
    states = encode_initial_states(model, (plan.init_step,) + plan.init_steps, plan.seed + 1)
    init_obs, init_obses = states[0], states[1:]
    starts = init_obses or [init_obs]
    episodes = [dream_episode(model, starts[i % len(starts)], plan.length, plan.seed + 2 + i)
                for i in range(plan.episodes)]
    return DreamSample(episodes, init_obs, init_obses)


# --- writing ----------------------------------------------------------------------------------------


def _dumps(obj: Any, protocol: int) -> bytes:
    return pickle.dumps(obj, protocol=protocol)


def _write_file(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _zip_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = _ZIP_CREATE_SYSTEM
    info.external_attr = _ZIP_UNIX_MODE
    return info


def _write_zip(path: Path, members: dict[str, bytes], *, zip64: bool) -> Path:
    """A deterministic archive; `zip64` writes Zip64 records as the release's large archives have."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            if zip64:
                with archive.open(_zip_info(name), "w", force_zip64=True) as member:
                    member.write(data)
            else:
                archive.writestr(_zip_info(name), data)
    return _write_file(path, buffer.getvalue())


def _write_dream_files(folder: Path, sources: schema.SourceFiles, sample: DreamSample) -> list[Path]:
    assert sources.scaled is not None
    written = [
        _write_file(folder / sources.episodes, _dumps(sample.episodes, DREAM_PROTOCOL)),
        _write_file(folder / sources.scaled, _dumps(scaled_episodes(sample.episodes), DREAM_PROTOCOL)),
    ]
    for name in sources.initial_states:
        if name.startswith("default_init_obses"):
            written.append(_write_file(folder / name, _dumps(sample.init_obses, INIT_OBSES_PROTOCOL)))
        else:
            written.append(_write_file(folder / name, _dumps(sample.init_obs, INIT_OBS_PROTOCOL)))
    return written


def write_carracing(folder: Path) -> list[Path]:
    """The dropj_carracing dummy data under `folder`."""
    specs = schema.DATASETS[CARRACING_DATASET]
    real = [record_real_episode(plan, schema.CARRACING, CARRACING_RAW_SIZE) for plan in CARRACING_REAL]
    written = [_write_zip(folder / CARRACING_ZIP,
                          {specs["real"].sources.episodes: _dumps(real, RAW_PROTOCOL)}, zip64=False)]
    written += _write_dream_files(folder / EXTRACTED, specs["dream"].sources, make_dream_sample(CARRACING_DREAM))
    return written


def write_obst_carracing(folder: Path) -> list[Path]:
    """The dropj_obst_carracing dummy data under `folder`."""
    specs = schema.DATASETS[OBST_DATASET]
    members = {}
    written = []
    for env in (schema.CHUCKC, schema.CHUCKCCAR):
        real = [record_real_episode(plan, env, OBST_RAW_SIZE) for plan in OBST_REAL[env.name]]
        members[specs[f"{env.name}_real"].sources.episodes] = _dumps(real, RAW_PROTOCOL)
        written += _write_dream_files(folder / EXTRACTED, specs[f"{env.name}_dream"].sources,
                                      make_dream_sample(OBST_DREAM[env.name]))
    return [_write_zip(folder / OBST_ZIP, members, zip64=True)] + written


def default_root() -> Path:
    import dropj_datasets

    return Path(dropj_datasets.__file__).parent


def write_sample(repo_root: Path | None = None) -> list[Path]:
    """Writes every sample file; returns the paths written. Deterministic: same bytes every run.

    `repo_root` is the folder holding the two dataset package folders; files go
    to `<repo_root>/<dataset>/dummy_data/`. Default: the installed
    `dropj_datasets` package.
    """
    root = default_root() if repo_root is None else Path(repo_root)
    return (write_carracing(root / CARRACING_DATASET / DUMMY_DATA)
            + write_obst_carracing(root / OBST_DATASET / DUMMY_DATA))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="write DIR/dropj_carracing/... and DIR/dropj_obst_carracing/... instead of "
                             "the dataset packages' dummy_data folders")
    args = parser.parse_args(argv)
    for path in write_sample(args.out):
        print(f"{path.stat().st_size:>10,d}  {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
