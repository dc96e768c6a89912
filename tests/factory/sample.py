"""Writes the embedded sample of the release: tiny real-format copies of every rollout file.

The two TFDS dataset packages keep a `dummy_data/` folder that the builder
tests use as their manual directory. This script fills it with one small file
per release rollout and human-feedback file, in exactly the release's on-disk
format (docs: DATA_FORMATS.md sections 0-6), laid out as the release ships them
(m is chuckc or chuckccar):

    dropj_carracing/dummy_data/
        carracing_rollouts.zip            raw_user_rollouts_res84_ep600.pkl (Dataset R, protocol 5)
        extracted/dream_user_rollouts.pkl, dream_user_rollouts_scaled.pkl   (Dataset D, protocol 4)
        extracted/default_init_obs.pkl                                      (protocol 4, one array)
        feedback/queries_s20/data.pkl, 0.mp4 ... 9.mp4                      (query segments, protocol 4; videos)
        feedback/responses_s20/responses_user26_s20_q600_drop.pkl, responses_user27_s20_q600_drope.pkl,
                               responses_user27_s20_q600_dropj.pkl          (GUI responses, protocol 4)
        feedback/request_query_data_guiTrue_rewep200_rewinitFalse_gdit200.pkl,
                 request_traj_opt_times_guiTrue_rewep200_rewinitFalse_gdit200.pkl,
                 dros_query_data_rewep200.pkl, dros_all_query_times_rewep200_.pkl  (protocol 5)
    dropj_obst_carracing/dummy_data/
        obst_rollouts.zip (Zip64 records) raw_user_rollouts_res128_ep600_chuckcobst.pkl,
                                          raw_user_rollouts_res128_ep800_chuckccarobst.pkl (protocol 5)
        extracted/dream_user_rollouts_{m}obst.pkl, ..._{m}obst_scaled.pkl   (protocol 4)
        extracted/default_init_obses_{m}obst.pkl (protocol 5, list), default_init_obs_{m}obst.pkl (protocol 4)
        feedback/queries_s20_{m}obst/data.pkl, 0.mp4 ...                    (protocol 4; videos)
        feedback/responses_s20_{m}obst/responses_{m}obst_user{44|45}_mjust.pkl  (protocol 4)

Why it is shortened. The release holds 600-800 real episodes of 1000 steps
(25-79 GB) and dream files of 10-60 episodes of 1000 steps. The sample keeps a
few episodes of 8-40 transitions, so that the rollout files together stay
under about 3 MB and are generated in seconds. Everything else is as in the
release: the types, dtypes, shapes, pickle protocols, info keys and their
order, the `deepcopy`'d tuples (so `obs_t` and `prev_obs_{t+1}` are equal but
distinct objects), the float64 step-0 dream state, and each way an episode
can end.

The feedback files keep 10 (Car Racing) and 4-5 (Obstacle) of the release's
hundreds of queries and responses, enough for every answer pattern of each
GUI and a skip, and ReQueST/DROS keep 3-4 sketches of 3-6 labelled steps
instead of 90 of up to 49. Query segments keep their full (20, 547) and
(20, 2115) float64 shape, so the query files are most of the sample; each
`queries_s20*/data.pkl` is zipped with its query videos, as the release ships its folders. Answers are scripted per
video (the plans below); times, repeat counts and labels of sparse queries are seeded draws.

Where the data comes from.
* Real episodes are driven in our own environments, `DropjCarRacing-v0` and
  `DropjObstCarRacing-v0` (which render, reward and flag as the authors'
  gym 0.20 ones; docs/environments.md), by a seeded, scripted keyboard-like
  driver (`drivers.py`). Frames, rewards and every info flag are the
  environment's: in Obstacle Car Racing the driver aims at a chuckhole (and
  an NPC car) when close, and each episode is cut where the environment
  flags the approach and the hit (`chuck_passed` then `chuck`, `car_passed`
  then `car`).
* The first Car Racing episode starts at the reset frame like the release's
  (zoom-in frames, white outside the field); every other one skips the
  50-step zoom-in so that its few frames show ordinary driving.
* Episode endings (time limit, leaving the playfield) are declared on the
  last step, as no sample episode is long enough to reach them (`_ending`).
* Dream states come from a tiny numpy MDN-RNN with seeded random weights that
  follows the release's dream dynamics (DATA_FORMATS.md 0.2 and 2).
* Query segments are cut from 60-step runs of the same dream (same world
  model, start states and seeds as the dream file, whose first 20 steps they
  do not share: the longer action script changes the random draws). DROS
  sketches come from the same runs, unscaled; ReQueST trajectories are
  deterministic mean rollouts of the same world model from 3 encoded start
  states, under random actions clamped to the action box (no optimiser).
* Query videos have the release's format (1000x500 H.264, 20 frames at
  2.5 fps) but, with no VAE to decode z, show each step's z as a heat map
  (`query_video`); about 30 kB (Car Racing) and 55 kB (Obstacle) each.
* GUI times are differences of a fixed 2024 `time.time()`-like clock, hence
  exact multiples of 2**-22 s like the release's; no real clock is read.

Deterministic: the same bytes on every run and on every x86-64 CPU (fixed seeds, fixed zip
timestamps and attributes; the dream arithmetic uses no BLAS, SIMD or libm result that differs between
CPUs: "portable arithmetic" below). Run it as `make sample` (`PYTHONPATH=tests python -m factory.sample`) in a clone.
"""

from __future__ import annotations

import argparse
import collections
import copy
import dataclasses
import io
import pickle
import zipfile
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from factory import drivers, query_video
from dropj_datasets import schema
from dropj_datasets.schema import EnvSpec

Transition = tuple[np.ndarray, np.ndarray, int, np.ndarray, float, dict]
Episode = list[Transition]

CARRACING_DATASET = "dropj_carracing"
OBST_DATASET = "dropj_obst_carracing"
DUMMY_DATA = "dummy_data"
EXTRACTED = "extracted"  # the release's plain .pkl files sit beside its zip archives
FEEDBACK = "feedback"  # human feedback files: query segments, responses, ReQueST and DROS data
CARRACING_ZIP = "carracing_rollouts.zip"
OBST_ZIP = "obst_rollouts.zip"

# Release protocols (DATA_FORMATS.md 0.4): raw rollouts and init-state lists 5,
# dream rollouts and the single-array default_init_obs files 4.
RAW_PROTOCOL = 5
DREAM_PROTOCOL = 4
INIT_OBS_PROTOCOL = 4
INIT_OBSES_PROTOCOL = 5
# Query data.pkl and GUI responses: the default protocol, 4; ReQueST/DROS outputs: HIGHEST_PROTOCOL, 5.
FEEDBACK_PROTOCOL = 4
SKETCH_PROTOCOL = 5

# Fixed zip metadata, so archives are byte-identical between runs.
_ZIP_DATE_TIME = (2024, 1, 1, 0, 0, 0)
_ZIP_UNIX_MODE = 0o644 << 16
_ZIP_CREATE_SYSTEM = 3  # Unix, whatever machine writes it

# The first second of an episode is a zoom-in animation (50 steps at 50 FPS).
ZOOM_STEPS = 50

# The keyboard subset of actions (DATA_FORMATS.md 0.3), env units.
STEER_LEFT, STEER_RIGHT, GAS, BRAKE = drivers.STEER_LEFT, drivers.STEER_RIGHT, drivers.GAS, drivers.BRAKE

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
    off the road and 'crash' steps appear. In Obstacle Car Racing the driver
    aims at NPC car `npc` and then at the first chuckhole when they are close
    ahead (`drivers.obstacle_target`), so the environment itself raises the
    obstacle flags; `cruise` is the speed it keeps.
    """

    seed: int
    length: int
    ending: str
    warmup: int = 0
    veer_from: Optional[int] = None
    aim_at_chuckhole: bool = False
    npc: Optional[int] = None
    cruise: float = 30.0

    def __post_init__(self) -> None:
        if self.ending not in ENDINGS:
            raise ValueError(f"ending must be one of {ENDINGS}, got {self.ending!r}")
        if self.length < 1 or self.warmup < 0:
            raise ValueError(f"need length >= 1 and warmup >= 0, got {self.length}, {self.warmup}")

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
# Obstacle Dataset R: one truncated and one terminated episode per mode, cut where the driver
# approaches and then hits a chuckhole (and, with cars, an NPC car): the flags are the environment's.
OBST_REAL = {
    schema.CHUCKC.name: (
        RealEpisodePlan(seed=0, length=30, ending=TIME_LIMIT, warmup=86, aim_at_chuckhole=True, cruise=25.0),
        RealEpisodePlan(seed=1, length=11, ending=LEFT_PLAYFIELD, warmup=95, aim_at_chuckhole=True, cruise=25.0),
    ),
    schema.CHUCKCCAR.name: (
        RealEpisodePlan(seed=2, length=36, ending=LEFT_PLAYFIELD, warmup=88, aim_at_chuckhole=True, npc=0),
        RealEpisodePlan(seed=0, length=26, ending=TIME_LIMIT, warmup=80, aim_at_chuckhole=True, npc=0),
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


# --- real episodes: our environments -----------------------------------------------------------------


def make_env(env: EnvSpec) -> Any:
    """Our gymnasium environment of `env` (DropjCarRacing-v0 or DropjObstCarRacing-v0 in its mode)."""
    import gymnasium

    import dropj_datasets.envs  # noqa: F401  (registers the ids)

    return gymnasium.make(env.gym_id, disable_env_checker=True, **env.make_kwargs)


def plan_action(core: Any, plan: RealEpisodePlan, env_step: int) -> np.ndarray:
    """The scripted keyboard driver of one plan at one env step (warm-up included)."""
    target = None
    if plan.aim_at_chuckhole or plan.npc is not None:
        target = drivers.obstacle_target(core, drivers.first_chuckhole(core) if plan.aim_at_chuckhole else None,
                                         plan.npc)
    return drivers.keyboard_action(core, plan.veers(env_step), target, cruise=plan.cruise)


def _info(env: EnvSpec, flags: set[str], truncated: Optional[bool] = None) -> dict:
    """The step's info dict: env keys in the env's order (present only when True), TimeLimit last."""
    info = {key: True for key in env.info_keys if key in flags and key != schema.TIME_LIMIT_TRUNCATED}
    if truncated is not None:
        info[schema.TIME_LIMIT_TRUNCATED] = truncated
    return info


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


def record_real_episode(plan: RealEpisodePlan, env: EnvSpec) -> Episode:
    """Drives our environment and records the release's transition list: its frames, rewards and flags."""
    gym_env = make_env(env)
    try:
        prev_obs, _ = gym_env.reset(seed=plan.seed)
        core = gym_env.unwrapped
        for env_step in range(plan.warmup):
            prev_obs, *_ = gym_env.step(plan_action(core, plan, env_step))
        episode: Episode = []
        for t in range(plan.length):
            action = plan_action(core, plan, plan.warmup + t)
            obs, reward, terminated, _, info = gym_env.step(action)
            if terminated:
                raise ValueError(f"{env.name} seed {plan.seed}: left the playfield at step {t}, before the plan's end")
            flags = {key for key in env.info_keys if info.get(key) is True}
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

# --- portable arithmetic: the same bytes on every x86-64 CPU -----------------------------------------
# A dream run feeds every state into the next, so one last-bit difference becomes a different file. BLAS
# sums a matrix product in a CPU-specific order (OpenBLAS picks a kernel per CPU), numpy's exp and tanh
# take AVX512, AVX2 or SSE paths with different last bits, and libm has FMA and non-FMA variants. The
# sample's own float math therefore uses only what IEEE 754 makes exact or correctly rounded everywhere:
# integers, and elementwise +, -, *, / and rint on float64, one operation per numpy call (no reduction
# whose order a SIMD path may change; nothing a compiler may fuse). Weights and states lie on binary
# grids, so the matrix products are exact integer sums, and every state is float32-exact.
_WEIGHT_BITS = 12  # weights are multiples of 2**-12
_STATE_BITS = 16  # z, c, h are multiples of 2**-16: float32-exact up to |v| < 256
_NORMAL_UNIFORMS = 12  # a normal draw is the sum of 12 uniform integers (Irwin-Hall), less its mean
_NORMAL_BITS = 20
_LN2_HI, _LN2_LO = 0.693145751953125, 1.4286068203094173e-06  # ln 2 = HI + LO, HI with 16 significant bits
_EXP_TERMS = 14  # Taylor terms of exp on |r| <= ln(2) / 2: error below 1e-17


def _normal(rng: np.random.Generator, shape: Any = None) -> np.ndarray:
    """float64 draws of about N(0, 1) from integers only (rng.standard_normal's ziggurat calls libm's exp
    and log in its tails): each a multiple of 2**-20 in (-6, 6)."""
    size = (_NORMAL_UNIFORMS,) + (tuple(np.atleast_1d(shape)) if shape is not None else ())
    ints = rng.integers(0, 1 << _NORMAL_BITS, size=size, dtype=np.int64).sum(axis=0)
    return (ints - _NORMAL_UNIFORMS * (1 << _NORMAL_BITS) // 2) / float(1 << _NORMAL_BITS)


def _on_grid(v: np.ndarray, bits: int = _STATE_BITS) -> np.ndarray:
    """v rounded to a multiple of 2**-bits (float64)."""
    return np.rint(np.asarray(v, np.float64) * float(1 << bits)) / float(1 << bits)


def _exp(v: np.ndarray) -> np.ndarray:
    """exp in float64 from +, -, *, / and ldexp only (v = k ln 2 + r, a Taylor polynomial of r)."""
    v = np.clip(np.asarray(v, np.float64), -700.0, 700.0)
    k = np.rint(v / (_LN2_HI + _LN2_LO))
    r = (v - k * _LN2_HI) - k * _LN2_LO
    p = np.ones_like(r)
    for n in range(_EXP_TERMS, 0, -1):  # Horner: 1 + r/1 (1 + r/2 (1 + ... (1 + r/n)))
        p = (p * r) / float(n) + 1.0
    return np.ldexp(p, k.astype(np.int64))


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + _exp(-v))


def _tanh(v: np.ndarray) -> np.ndarray:
    return 2.0 / (1.0 + _exp(-2.0 * np.asarray(v, np.float64))) - 1.0


def _matvec(weights: np.ndarray, x: np.ndarray) -> np.ndarray:
    """weights (int64, units of 2**-12) @ x (on the state grid): an exact integer sum, as float64."""
    exact = weights @ np.rint(np.asarray(x, np.float64) * float(1 << _STATE_BITS)).astype(np.int64)
    return exact / float(1 << (_WEIGHT_BITS + _STATE_BITS))


def _row_sums(columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(running sums, total) over the last axis, added column by column in order."""
    running = np.empty_like(columns)
    total = np.zeros(columns.shape[:-1])
    for k in range(columns.shape[-1]):
        total = total + columns[..., k]
        running[..., k] = total
    return running, total


class TinyWorldModel:
    """An MDN-RNN with seeded random weights; its states are float32-exact, as in the authors' torch model.

    LSTMCell: input [z (n_z), action (3, env units)], hidden `rnn_size`.
    MDN head: for each latent dimension, K mixtures of (logmix, mean, logstd)
    computed from the new hidden state. Shapes are those of the release;
    weights are random, so the states are plausible in range only. The arithmetic
    is portable (see `_exp`, `_matvec`): the same states on every CPU.
    """

    def __init__(self, env: EnvSpec, mixtures: int, seed: int):
        rng = np.random.default_rng(seed)
        self.env, self.mixtures = env, mixtures
        n_in = env.n_z + 3 + env.rnn_size
        scale = float(1 << _WEIGHT_BITS)
        self.lstm_w = np.rint(_normal(rng, (4 * env.rnn_size, n_in)) * (_LSTM_GAIN / np.sqrt(n_in) * scale)
                              ).astype(np.int64)
        self.lstm_b = np.zeros(4 * env.rnn_size)
        self.lstm_b[env.rnn_size:2 * env.rnn_size] = 1.0  # forget-gate bias, as is customary
        self.mdn_w = np.rint(_normal(rng, (env.n_z * 3 * mixtures, env.rnn_size)) * (scale / np.sqrt(env.rnn_size))
                             ).astype(np.int64)
        self.mdn_b = np.zeros((env.n_z, 3, mixtures))
        self.mdn_b[:, 2] = -1.0  # logstd around -1: std about 0.37

    def lstm(self, z: np.ndarray, action: np.ndarray, c: np.ndarray,
             h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(c, h) after consuming [z, action]; float32 (rnn_size,) on the state grid."""
        x = np.concatenate([z, _on_grid(action), h]).astype(np.float64)
        i, f, g, o = np.split(_matvec(self.lstm_w, x) + self.lstm_b, 4)
        c_next = _on_grid(_sigmoid(f) * c.astype(np.float64) + _sigmoid(i) * _tanh(g))
        return c_next.astype(np.float32), _on_grid(_sigmoid(o) * _tanh(c_next)).astype(np.float32)

    def _head(self, h: np.ndarray) -> np.ndarray:
        return _matvec(self.mdn_w, h).reshape(self.env.n_z, 3, self.mixtures) + self.mdn_b

    def sample_z(self, h: np.ndarray, rng: np.random.Generator, temperature: float = 1.0) -> np.ndarray:
        """z ~ MDN(h) as in DATA_FORMATS.md 2: per dimension a mixture k ~ softmax(logmix / T),
        then mean_k + exp(logstd_k) * N(0, 1) * sqrt(T)."""
        out = self._head(h)
        logmix, mean, logstd = out[:, 0], out[:, 1], out[:, 2]
        weights = _exp((logmix - logmix.max(axis=1, keepdims=True)) / temperature)
        running, total = _row_sums(weights)
        picks = (rng.random((self.env.n_z, 1)) > running / total[:, None]).sum(axis=1).clip(0, self.mixtures - 1)
        rows = np.arange(self.env.n_z)
        noise = _normal(rng, self.env.n_z)
        return _on_grid(mean[rows, picks] + _exp(logstd[rows, picks]) * noise * np.sqrt(temperature)
                        ).astype(np.float32)

    def mean_z(self, h: np.ndarray, temperature: float) -> np.ndarray:
        """The deterministic MDN prediction ReQueST's trajectories use (`next_obs(sample=False)`):
        per dimension sum_k softmax(logmix / T)_k * mean_k, float32."""
        out = self._head(h)
        logmix, mean = out[:, 0] / temperature, out[:, 1]
        weights = _exp(logmix - logmix.max(axis=1, keepdims=True))
        total = _row_sums(weights)[1]
        return _on_grid(_row_sums((weights / total[:, None]) * mean)[1]).astype(np.float32)

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
    scales = np.where(rng.random(env.n_z) < 1 / 3, 0.02, rng.uniform(0.3, 1.0, env.n_z))
    c = np.zeros(env.rnn_size, np.float32)
    h = np.zeros(env.rnn_size, np.float32)
    wanted = set(steps)
    found: dict[int, np.ndarray] = {}
    actions = _keyboard_actions(rng, max(steps) + 1)
    for t in range(max(steps) + 1):
        z = _on_grid(_normal(rng, env.n_z) * scales).astype(np.float32)
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


# --- human feedback: preference queries and GUI responses (DATA_FORMATS.md 4-5) -------------------------

SEGMENT = 20  # steps per preference clip: the 's20' of the release's folder names

# The GUIs' question and answer strings, exactly as the release stores them (DATA_FORMATS.md 5.1-5.2),
# spelled once in the schema.
SKIPPED = schema.SKIPPED_ANSWER  # 'responses' of a skipped query
PREFERENCE_QUESTION = schema.Q_PREFER
LEFT_SAFE_QUESTION, RIGHT_SAFE_QUESTION = schema.Q_LEFT_SAFE, schema.Q_RIGHT_SAFE
JUSTIFICATION_PROMPT, PREFERENCE_PROMPT = schema.Q_JUSTIFICATION, schema.Q_PREFERENCE
LEFT, RIGHT, EQUALLY = schema.A_LEFT, schema.A_RIGHT, schema.A_EQUALLY
YES, NO = schema.A_YES, schema.A_NO
DEFAULT, GRASS, CHUCKHOLE, CAR = "Default", "Grass", "Chuckhole", "Car"  # obst_pref_gui.py:121-133

# Car Racing GUI modes (pref_gui.py) and the preference answers each offers.
DROP, DROPE, DROPJ = "drop", "drope", "dropj"
PREFERENCES = {DROP: (LEFT, RIGHT), DROPE: (LEFT, RIGHT, EQUALLY), DROPJ: (LEFT, RIGHT, EQUALLY)}
# Obstacle multi-justification GUI (obst_pref_gui.py): justifications per env, one preference.
JUSTIFICATIONS = {schema.CHUCKC.name: (DEFAULT, GRASS, CHUCKHOLE),
                  schema.CHUCKCCAR.name: (DEFAULT, GRASS, CHUCKHOLE, CAR)}
OBST_PREFERENCES = (LEFT, EQUALLY, RIGHT)

# The GUIs time answers with time.time() differences. At a 2024 epoch (between 2**30 and
# 2**31 s) such a difference is an exact multiple of 2**-22 s, as every time in the
# release's responses files is; the sample starts its clock at this fixed instant.
_GUI_EPOCH = 1_717_000_000.0

Answers = str | tuple[str, ...]  # SKIPPED, or the answers of one query in the order asked


def asked_questions(mode: str, answers: tuple[str, ...]) -> tuple[str, ...]:
    """The questions a GUI asked to get `answers`; raises ValueError for a pattern it cannot produce.

    DROP/DROPe ask one preference. DROPJ asks both safety questions and the
    preference only when both answers are Yes (pref_gui.py:273-286). The
    obstacle GUI (`mode` an obstacle env name) records a justification and a
    preference, without per-answer times.
    """
    if mode in JUSTIFICATIONS:
        if len(answers) != 2 or answers[0] not in JUSTIFICATIONS[mode] or answers[1] not in OBST_PREFERENCES:
            raise ValueError(f"{mode}: expected (justification in {JUSTIFICATIONS[mode]}, preference in "
                             f"{OBST_PREFERENCES}), got {answers}")
        return JUSTIFICATION_PROMPT, PREFERENCE_PROMPT
    if mode in (DROP, DROPE):
        if len(answers) != 1 or answers[0] not in PREFERENCES[mode]:
            raise ValueError(f"{mode}: expected one answer in {PREFERENCES[mode]}, got {answers}")
        return (PREFERENCE_QUESTION,)
    if mode == DROPJ:
        safety, preference = answers[:2], answers[2:]
        if len(safety) != 2 or not set(safety) <= {YES, NO}:
            raise ValueError(f"{mode}: expected two safety answers in {(YES, NO)}, got {answers}")
        both_safe = safety == (YES, YES)
        if both_safe != bool(preference) or (preference and (len(preference) != 1
                                                             or preference[0] not in PREFERENCES[mode])):
            raise ValueError(f"{mode}: a preference in {PREFERENCES[mode]} follows exactly when both cars "
                             f"stay safe, got {answers}")
        return (LEFT_SAFE_QUESTION, RIGHT_SAFE_QUESTION) + ((PREFERENCE_QUESTION,) if both_safe else ())
    raise ValueError(f"unknown GUI mode {mode!r}")


@dataclasses.dataclass(frozen=True)
class QueryPlan:
    """One `queries_s20*/data.pkl`: preference queries cut from dream episodes.

    The segments are cut from `episodes` dream episodes of `length` steps of
    the `dream` plan's world model and start states (the release cuts from
    its 1000-step `_scaled` dream file).
    """

    folder: str
    dream: DreamPlan
    queries: int
    seed: int
    episodes: int = 3
    length: int = 60

    def __post_init__(self) -> None:
        if self.queries < 1 or self.episodes < 1 or self.length <= SEGMENT:
            raise ValueError(f"need queries, episodes >= 1 and length > {SEGMENT}")


@dataclasses.dataclass(frozen=True)
class ResponsesPlan:
    """One GUI session's responses file: an answer pattern per video '0.mp4', '1.mp4', ... in order."""

    file: str  # path under feedback/, as in the release
    mode: str  # DROP, DROPE, DROPJ, or the obstacle env name
    seed: int
    answers: tuple[Answers, ...]

    def __post_init__(self) -> None:
        for video, answers in enumerate(self.answers):
            if answers != SKIPPED:
                try:
                    asked_questions(self.mode, answers)
                except ValueError as exc:
                    raise ValueError(f"{self.file}, video {video}: {exc}") from exc


CARRACING_QUERIES = QueryPlan("queries_s20", CARRACING_DREAM, queries=10, seed=111)
OBST_QUERIES = {env.name: QueryPlan(f"queries_s20_{env.name}obst", OBST_DREAM[env.name], queries=count, seed=seed)
                for env, count, seed in ((schema.CHUCKC, 4, 211), (schema.CHUCKCCAR, 5, 311))}

_S = SKIPPED
# 10 of the release's 600 answers per file; every answer pattern of DATA_FORMATS.md 5.1 at least once.
# User 27 (DROPe, DROPJ) skips the same videos, as in the release.
CARRACING_RESPONSES = (
    ResponsesPlan("responses_s20/responses_user26_s20_q600_drop.pkl", DROP, seed=121, answers=(
        (LEFT,), (RIGHT,), _S, _S, (LEFT,), (RIGHT,), (LEFT,), (RIGHT,), (RIGHT,), (LEFT,))),
    ResponsesPlan("responses_s20/responses_user27_s20_q600_drope.pkl", DROPE, seed=122, answers=(
        _S, (RIGHT,), (EQUALLY,), _S, (LEFT,), (EQUALLY,), (LEFT,), (RIGHT,), (LEFT,), (EQUALLY,))),
    ResponsesPlan("responses_s20/responses_user27_s20_q600_dropj.pkl", DROPJ, seed=123, answers=(
        _S, (NO, YES), (NO, NO), _S, (YES, NO), (YES, YES, EQUALLY), (YES, YES, LEFT), (YES, NO),
        (YES, YES, RIGHT), (NO, YES))),
)
# 4 and 5 answers (the release's count is unknown, DATA_FORMATS.md 5.2; each query of 2115-wide
# float64 segments costs 0.68 MB): every justification and preference of the mode, and one skip.
OBST_RESPONSES = {
    schema.CHUCKC.name: ResponsesPlan(
        "responses_s20_chuckcobst/responses_chuckcobst_user44_mjust.pkl", schema.CHUCKC.name, seed=221,
        answers=((DEFAULT, LEFT), (GRASS, RIGHT), _S, (CHUCKHOLE, EQUALLY))),
    schema.CHUCKCCAR.name: ResponsesPlan(
        "responses_s20_chuckccarobst/responses_chuckccarobst_user45_mjust.pkl", schema.CHUCKCCAR.name, seed=321,
        answers=((CAR, LEFT), (DEFAULT, EQUALLY), _S, (GRASS, RIGHT), (CHUCKHOLE, LEFT))),
}
del _S


def dream_runs(plan: QueryPlan) -> list[Episode]:
    """The longer dream episodes queries are cut from: the plan's dream, run for `length` steps.

    Same world model, start states and episode seeds as the sample's dream
    file; unscaled actions (env units), as the world model is fed.
    """
    return make_dream_sample(dataclasses.replace(plan.dream, episodes=plan.episodes,
                                                 length=plan.length)).episodes


def _segment_inputs(episode: Episode) -> np.ndarray:
    """(length, latent_dim + 3) float64 rows concat(prev_obs_t, action_t), as the release stacks them.

    Step 0's float64 state and later float32 states all become float64.
    """
    return np.array([np.concatenate((t[0], t[1])) for t in episode])


def make_queries(plan: QueryPlan, runs: list[Episode]) -> dict[str, dict[str, np.ndarray]]:
    """data.pkl (DATA_FORMATS.md 4.1): {'i.mp4': {'segment1': left, 'segment2': right}}.

    Each segment: (SEGMENT, latent_dim + 3) float64 rows [prev_obs_t | scaled
    action_t] of SEGMENT consecutive steps. Episode and start offset of the
    left and right clip are drawn independently (both may come from one
    episode); offsets are uniform in [0, length - SEGMENT - 1] like the
    release's `np.random.choice(len_traj - size_segment)`.
    """
    rng = np.random.default_rng(plan.seed)
    inputs = [_segment_inputs(episode) for episode in scaled_episodes(runs)]
    queries = {}
    for i in range(plan.queries):
        segments = []
        for _ in range(2):
            rows = inputs[int(rng.integers(len(inputs)))]
            start = int(rng.integers(len(rows) - SEGMENT))
            segments.append(rows[start:start + SEGMENT].copy())
        queries[f"{i}.mp4"] = {"segment1": segments[0], "segment2": segments[1]}
    return queries


def _watch_seconds(rng: np.random.Generator, repeat_count: int) -> float:
    """Time to watch a clip (about 0.8 s at the GUI's real frame rate) and think, per play."""
    return sum(float(rng.uniform(0.8, 3.0)) for _ in range(1 + repeat_count))


def make_responses(plan: ResponsesPlan) -> list[dict]:
    """A GUI session's responses list (DATA_FORMATS.md 5.1-5.2).

    Each entry is {'video', 'responses', 'repeat_count', 'total_time'} with
    Python str, list of tuples (or 'Skipped'), int and float values. The Car
    Racing GUI stores (question, answer, seconds) with `seconds` the time since
    the previous answer (or the query's load); `total_time` runs from the load
    to just after the last answer, 0.05-3.3 ms more than the summed seconds.
    The obstacle GUI stores (prompt, answer) pairs without times.
    """
    rng = np.random.default_rng(plan.seed)
    now = _GUI_EPOCH + float(rng.uniform(0.0, 3600.0))
    entries = []
    for video, answers in enumerate(plan.answers):
        repeat_count = int(rng.choice((0, 0, 0, 0, 1, 1, 2, 3)))
        loaded = now
        now += _watch_seconds(rng, repeat_count)
        if answers == SKIPPED:
            responses: Any = SKIPPED
        elif plan.mode in JUSTIFICATIONS:
            responses = list(zip(asked_questions(plan.mode, answers), answers, strict=True))
            now += float(rng.uniform(0.5, 3.0))
        else:
            responses, answered = [], loaded
            for question, answer in zip(asked_questions(plan.mode, answers), answers, strict=True):
                if responses:
                    now += float(rng.uniform(0.4, 2.5))
                responses.append((question, answer, now - answered))
                answered = now
            now += float(rng.uniform(5e-5, 3.3e-3))  # saving the answer, before total_time is read
        # 'video', 'responses', 'repeat_count', 'total_time', in the release's order
        entry = (f"{video}.mp4", responses, repeat_count, now - loaded)
        entries.append(dict(zip(schema.RESPONSE_KEYS, entry, strict=True)))
        now += float(rng.uniform(0.05, 0.3))  # loading the next video
    return entries


# --- ReQueST and DROS sparse-label files (DATA_FORMATS.md 6) -------------------------------------------

# ReQueST's and DROS's label buttons 'Grass/Kerbs', 'Road', 'New Tile' give env.rew_classes,
# a float64 array, so every stored reward is a numpy.float64.
REWARD_CLASSES = np.array([CRASH_REWARD, NO_REWARD, SUCC_REWARD], dtype=np.float64)
REQUEST_TEMPERATURE = 0.1  # the MDN temperature of ReQueST's trajectory rollouts
REQUEST_QUERY_LOSSES = ("rew_uncertainty", "max_rew", "min_rew", "max_nov")
REQUEST_SECONDS = (193.58, 4.50)  # mean and std of one trajectory optimisation (eval_request.py's comment)


@dataclasses.dataclass(frozen=True)
class SketchPlan:
    """Sketches of one GUI run: per sketch, the queries offered and the ones the user skipped.

    A sketch of a trajectory of n + 1 states offers n single-step queries
    (the release's 49); a skipped query leaves no tuple and no time.
    """

    seed: int
    queries: tuple[int, ...]
    skipped: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        if len(self.queries) != len(self.skipped):
            raise ValueError("need one tuple of skipped queries per sketch")
        for n, skipped in zip(self.queries, self.skipped, strict=True):
            if not set(skipped) <= set(range(n)) or len(set(skipped)) == n:
                raise ValueError(f"skipped queries {skipped} must be some, not all, of 0..{n - 1}")


# ReQueST: 4 sketches instead of the release's 90 or 135, 3-6 tuples instead of up to 49; one
# skipped query breaks the s_next -> s chain once. Start states: 3 instead of the release's 15.
REQUEST_SKETCHES = SketchPlan(seed=131, queries=(4, 6, 3, 5), skipped=((), (2,), (), ()))
REQUEST_STARTS = (100, 200, 300)  # encoding-pass steps of the stand-ins for default_init_obses_ep600enc_15
# DROS: 3 sketches instead of 90, from 6-state segments instead of 50-state ones.
DROS_SKETCHES = SketchPlan(seed=141, queries=(5, 5, 5), skipped=((), (0, 3), (4,)))

REQUEST_QUERY_DATA = "request_query_data_guiTrue_rewep200_rewinitFalse_gdit200.pkl"
REQUEST_TRAJ_OPT_TIMES = "request_traj_opt_times_guiTrue_rewep200_rewinitFalse_gdit200.pkl"
REQUEST_ALL_QUERY_TIMES, REQUEST_REW_PERF_EVALS, REQUEST_REW_PERF_EVALS_CLEAN, REQUEST_INIT_OBSES = \
    schema.DATASETS["dropj_carracing"]["request"].companion_files
DROS_QUERY_DATA = "dros_query_data_rewep200.pkl"
DROS_QUERY_TIMES = "dros_all_query_times_rewep200_.pkl"  # sic: the release's trailing underscore


def label_sketch(rng: np.random.Generator, traj: np.ndarray, actions: np.ndarray,
                 skipped: tuple[int, ...]) -> tuple[list[tuple], list[float]]:
    """The GUI's labelling of one trajectory (request.py / dros.py `record_feedback`).

    Query k shows traj[k] -> traj[k+1] under actions[k]; the user clicks a
    reward class or skips. Returns the sketch of (s, a, r, s_next, None, None)
    tuples (s, a, s_next are row views of `traj` and `actions`, as in the GUI)
    and the seconds each answered query took.
    """
    sketch, seconds = [], []
    for k in range(len(actions)):
        shown = _GUI_EPOCH + float(rng.uniform(0.0, 3600.0))
        answered = shown + float(rng.uniform(0.4, 3.0))
        if k in skipped:
            continue
        reward = REWARD_CLASSES[int(rng.choice(len(REWARD_CLASSES), p=(0.3, 0.5, 0.2)))]
        sketch.append((traj[k], actions[k], reward, traj[k + 1], None, None))
        seconds.append(answered - shown)
    return sketch, seconds


def optimised_trajectory(model: TinyWorldModel, start: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """Stand-in for ReQueST's GDTrajOptimizer `traj` (DATA_FORMATS.md 6.1): (n + 1, latent_dim) float32.

    Row 0 is the float32 start state; each later row the deterministic MDN
    mean rollout at T = 0.1 under `actions` (dynamics_model.enc_traj_of_act_seq).
    """
    z, c, h = model.split(start)
    traj = [start.astype(np.float32)]
    for action in actions:
        c, h = model.lstm(z, action, c, h)
        z = model.mean_z(h, REQUEST_TEMPERATURE)
        traj.append(np.concatenate((z, c, h)))
    return np.stack(traj)


def make_request_sketches(plan: SketchPlan, dream: DreamPlan) -> list[list[tuple]]:
    """request_query_data (DATA_FORMATS.md 6.1): sketch i starts from start state i % n, in order.

    Actions stand for the optimiser's: continuous, float32, env units clamped
    to the action box (`utils.clamp_act`), so some sit exactly on a bound.
    """
    model = TinyWorldModel(dream.env, dream.mixtures, dream.seed)
    starts = encode_initial_states(model, REQUEST_STARTS, plan.seed)
    rng = np.random.default_rng(plan.seed + 1)
    sketches = []
    for i, (n, skipped) in enumerate(zip(plan.queries, plan.skipped, strict=True)):
        raw = np.array((0.0, 0.6, 0.1)) + np.array((0.8, 0.5, 0.3)) * _normal(rng, (n, 3))
        actions = np.clip(raw, schema.ACTION_LOW, schema.ACTION_HIGH).astype(np.float32)
        traj = optimised_trajectory(model, starts[i % len(starts)], actions)
        sketches.append(label_sketch(rng, traj, actions, skipped)[0])
    return sketches


def make_request_traj_opt_times(plan: SketchPlan) -> collections.defaultdict:
    """request_traj_opt_times (DATA_FORMATS.md 6.2): defaultdict(list) query loss -> seconds per run.

    The runs follow request.py's schedule over the sample's start states for
    two feedback sessions: session 0 cycles rew_uncertainty, max_rew, min_rew;
    session 1 uses max_nov. (The sketch file keeps only its first sketches.)
    """
    rng = np.random.default_rng(plan.seed + 2)
    times: collections.defaultdict = collections.defaultdict(list)
    for session in range(2):
        for i in range(len(REQUEST_STARTS)):
            loss = REQUEST_QUERY_LOSSES[i % 3] if session == 0 else REQUEST_QUERY_LOSSES[3]
            start = _GUI_EPOCH + float(rng.uniform(0.0, 3600.0))
            mean, std = REQUEST_SECONDS
            times[loss].append(start + (mean + std * float(_normal(rng))) - start)
    return times


def make_request_companions(plan: SketchPlan, sketches: list[list[tuple]]) -> dict[str, Any]:
    """ReQueST's siblings (DATA_FORMATS.md 6.2) and its 15 start states (DATA_FORMATS.md 3), for the `request`
    config to keep whole: per-label seconds per sketch; reward-model performance by number of queries (the
    `[_clean]` pair: `n_queries`, `perf`, `rollouts`, `real_rollouts`; its inner layout is open in the spec,
    so the sample's is a plausible one of lists and floats); 15 float64 (544,) states, float32-exact."""
    rng = np.random.default_rng(plan.seed + 3)
    seconds = [[float(rng.uniform(0.3, 4.0)) for _ in sketch] for sketch in sketches]

    def evals(noise: float) -> dict:
        n = [15 * (k + 1) for k in range(len(sketches))]
        return {"n_queries": n, "perf": [float(10.0 * k + noise * _normal(rng)) for k in range(len(n))],
                "rollouts": [[float(x) for x in 50.0 + 10.0 * _normal(rng, 3)] for _ in n],
                "real_rollouts": [[float(x) for x in 30.0 + 10.0 * _normal(rng, 3)] for _ in n]}

    states = [_normal(rng, 544).astype(np.float32).astype(np.float64) for _ in range(15)]
    return {REQUEST_ALL_QUERY_TIMES: seconds, REQUEST_REW_PERF_EVALS: evals(2.0),
            REQUEST_REW_PERF_EVALS_CLEAN: evals(0.5), REQUEST_INIT_OBSES: states}


def make_dros_sketches(plan: SketchPlan, runs: list[Episode]) -> tuple[list[list[tuple]], list[list[float]]]:
    """dros_query_data and dros_all_query_times (DATA_FORMATS.md 6.3).

    As `create_sketches_queries`: segments of n + 1 rows [prev_obs | action]
    (float64) cut at random episodes and offsets of the unscaled dream
    episodes; traj = rows[:, :latent_dim], actions = rows[:-1, latent_dim:].
    """
    if len(set(plan.queries)) != 1:
        raise ValueError("DROS cuts every sketch from segments of one size")
    rng = np.random.default_rng(plan.seed)
    inputs = [_segment_inputs(episode) for episode in runs]
    size = plan.queries[0] + 1
    sketches, times = [], []
    for skipped in plan.skipped:
        rows = inputs[int(rng.integers(len(inputs)))]
        start = int(rng.integers(len(rows) - size))
        segment = rows[start:start + size].copy()
        latent_dim = segment.shape[1] - 3
        sketch, seconds = label_sketch(rng, segment[:, :latent_dim], segment[:-1, latent_dim:], skipped)
        sketches.append(sketch)
        times.append(seconds)
    return sketches, times


# --- writing ----------------------------------------------------------------------------------------


def _dumps(obj: Any, protocol: int) -> bytes:
    return pickle.dumps(obj, protocol=protocol)


def _write_file(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _zip_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE_TIME)
    # H.264 in mp4 is already compressed: deflate would gain nothing and cost time to read.
    info.compress_type = zipfile.ZIP_STORED if name.endswith(".mp4") else zipfile.ZIP_DEFLATED
    info.create_system = _ZIP_CREATE_SYSTEM
    info.external_attr = _ZIP_UNIX_MODE
    return info


def _write_zip(path: Path, members: dict[str, bytes], *, zip64: bool, level: Optional[int] = None) -> Path:
    """A deterministic archive; `zip64` writes Zip64 records as the release's large archives have."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=level) as archive:
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
    real = [record_real_episode(plan, schema.CARRACING) for plan in CARRACING_REAL]
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
        real = [record_real_episode(plan, env) for plan in OBST_REAL[env.name]]
        members[specs[f"{env.name}_real"].sources.episodes] = _dumps(real, RAW_PROTOCOL)
        written += _write_dream_files(folder / EXTRACTED, specs[f"{env.name}_dream"].sources,
                                      make_dream_sample(OBST_DREAM[env.name]))
    return [_write_zip(folder / OBST_ZIP, members, zip64=True)] + written


def write_carracing_feedback(folder: Path) -> list[Path]:
    """The dropj_carracing feedback files under `folder` (DATA_FORMATS.md 4-6)."""
    runs = dream_runs(CARRACING_QUERIES)
    queries = make_queries(CARRACING_QUERIES, runs)
    written = [_write_queries(folder, CARRACING_QUERIES, queries)]
    for plan in CARRACING_RESPONSES:
        written.append(_write_responses(folder, plan, queries))
    dros_sketches, dros_times = make_dros_sketches(DROS_SKETCHES, runs)
    request_sketches = make_request_sketches(REQUEST_SKETCHES, CARRACING_DREAM)
    for name, data in make_request_companions(REQUEST_SKETCHES, request_sketches).items():
        protocol = INIT_OBSES_PROTOCOL if name == REQUEST_INIT_OBSES else SKETCH_PROTOCOL
        written.append(_write_file(folder / name, _dumps(data, protocol)))
    for name, data in ((REQUEST_QUERY_DATA, request_sketches),
                       (REQUEST_TRAJ_OPT_TIMES, make_request_traj_opt_times(REQUEST_SKETCHES)),
                       (DROS_QUERY_DATA, dros_sketches),
                       (DROS_QUERY_TIMES, dros_times)):
        written.append(_write_file(folder / name, _dumps(data, SKETCH_PROTOCOL)))
    return written


def write_obst_feedback(folder: Path) -> list[Path]:
    """The dropj_obst_carracing feedback files under `folder` (DATA_FORMATS.md 4, 5.2)."""
    written = []
    for env in (schema.CHUCKC, schema.CHUCKCCAR):
        plan = OBST_QUERIES[env.name]
        queries = make_queries(plan, dream_runs(plan))
        written.append(_write_queries(folder, plan, queries))
        written.append(_write_responses(folder, OBST_RESPONSES[env.name], queries))
    return written


def query_videos(plan: QueryPlan, queries: dict) -> dict[str, bytes]:
    """The `{i}.mp4` beside data.pkl for each of its keys (DATA_FORMATS.md 4.2), in the key order.

    The release's frames are VAE reconstructions of each step's z; the sample has
    no VAE and shows each step's z as a heat map instead (`query_video.latent_panels`).
    """
    n_z = plan.dream.env.n_z
    return {video: query_video.render(query_video.latent_panels(query["segment1"], n_z),
                                      query_video.latent_panels(query["segment2"], n_z))
            for video, query in queries.items()}


def _write_queries(folder: Path, plan: QueryPlan, queries: dict) -> Path:
    # Zipped, as the release ships its folders: float64 segments of float32 values deflate to about half.
    # data.pkl first, then the videos, stored (`_zip_info`).
    members = {f"{plan.folder}/data.pkl": _dumps(queries, FEEDBACK_PROTOCOL)}
    members.update({f"{plan.folder}/{video}": mp4 for video, mp4 in query_videos(plan, queries).items()})
    return _write_zip(folder / f"{plan.folder}.zip", members, zip64=False, level=9)


def _write_responses(folder: Path, plan: ResponsesPlan, queries: dict) -> Path:
    # Every response names its query's video, the data.pkl key the training code looks up.
    missing = [f"{i}.mp4" for i in range(len(plan.answers)) if f"{i}.mp4" not in queries]
    if missing:
        raise ValueError(f"{plan.file}: videos {missing} have no query segments")
    return _write_file(folder / plan.file, _dumps(make_responses(plan), FEEDBACK_PROTOCOL))


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
    carracing, obst = root / CARRACING_DATASET / DUMMY_DATA, root / OBST_DATASET / DUMMY_DATA
    return (write_carracing(carracing) + write_carracing_feedback(carracing / FEEDBACK)
            + write_obst_carracing(obst) + write_obst_feedback(obst / FEEDBACK))


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
