"""The DROPJ RLDS schema: every field of every dataset, spelled once.

The TFDS builders (`dropj_datasets.builder`), the exporter and verifier
(`dropj.converters`) and `docs/schema.md` are all driven by the specs below,
so they cannot drift apart. This module needs numpy only.

RLDS alignment contract
-----------------------
A legacy episode is a list of T transitions
`(prev_obs_t, action_t, reward_t, obs_t, done_t, info_t)` with
`prev_obs_{t+1} == obs_t`. It becomes T+1 RLDS steps:

* step t < T: `observation = prev_obs_t` (the state the action was taken in),
  `action = action_t`, `reward = reward_t` (the reward *for* that action),
  `info = info_t`, `is_first = (t == 0)`, `is_last = False`,
  `is_terminal = False`, `discount = 1`.
* step T (the extra last step): `observation = obs_{T-1}` (the final state
  s_T, which the source stores only as the last tuple's `obs`),
  `is_last = True`; its action, reward and info carry no data and are
  padding (zeros, 0, every info key absent). `is_terminal` is true only for
  a real termination (the car left the playfield: the last `done` is 1.0 and
  the gym TimeLimit did not flag `TimeLimit.truncated=True`); an episode cut
  at the 1000-step limit, or a dream episode that simply stops, is truncated,
  not terminal. `discount` of step T is 0 when terminal, else 1.

Each frame is therefore stored once, not twice as in the source. Everything
the source holds that RLDS does not model is kept losslessly: the last
transition's `done` float and the pickle protocol in the episode metadata,
each `info` key as a tri-state (-1 absent, 0 False, 1 True), and for dream
data the exact float64 step-0 state (`initial_state`) that the source keeps
in a different dtype from every later state.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Optional

import numpy as np

# --- RLDS step keys (the same strings as rlds.rlds_types; a test checks it) ---
OBSERVATION = "observation"
ACTION = "action"
REWARD = "reward"
DISCOUNT = "discount"
IS_FIRST = "is_first"
IS_LAST = "is_last"
IS_TERMINAL = "is_terminal"
STEPS = "steps"
EPISODE_METADATA = "episode_metadata"

# --- DROPJ step keys ---
ACTION_SCALED = "action_scaled"
INFO = "info"

# --- episode metadata keys ---
SOURCE_FILE = "source_file"
SOURCE_FILE_SCALED = "source_file_scaled"
EPISODE_INDEX = "episode_index"
FINAL_DONE = "final_done"
PICKLE_PROTOCOL = "pickle_protocol"
INITIAL_STATE = "initial_state"
INITIAL_STATE_FILE = "initial_state_file"
INITIAL_STATE_INDEX = "initial_state_index"

# --- info: tri-state encoding of "key absent / False / True" ---
INFO_ABSENT, INFO_FALSE, INFO_TRUE = -1, 0, 1

# Source info key -> feature name (a '.' does not belong in a feature path).
TIME_LIMIT_TRUNCATED = "TimeLimit.truncated"
INFO_FEATURE_NAMES = {
    "crash": "crash",
    "succ": "succ",
    "chuck": "chuck",
    "chuck_passed": "chuck_passed",
    "car": "car",
    "car_passed": "car_passed",
    TIME_LIMIT_TRUNCATED: "time_limit_truncated",
}
INFO_DOCS = {
    "crash": "off-road or out of the playfield on this step (reward -1)",
    "succ": "a new tile was visited on this step and the car was on the road (reward +10)",
    "chuck": "an agent wheel first touched a chuckhole not touched before in this episode",
    "chuck_passed": "the agent hull first came within 20 units of a chuckhole ('approached')",
    "car": "the agent hull first collided with an NPC car",
    "car_passed": "the agent hull first came within 20 units of an NPC car",
    TIME_LIMIT_TRUNCATED: "set by gym's TimeLimit at step 1000: True unless the car also left the playfield",
}

# --- action conventions (DATA_FORMATS.md 0.3) ---
ACTION_LOW = np.array([-1.0, 0.0, 0.0])
ACTION_HIGH = np.array([1.0, 1.0, 1.0])


MAX_MESSAGE = 4000  # characters of one error message, whatever the data


class DataError(ValueError):
    """Source data that breaks the schema; the message names where and what.

    Messages are bounded (`MAX_MESSAGE`): values from the data go in through
    `describe`, never through a plain repr of an untrusted structure.
    """

    def __init__(self, message: str = "", *, file: Optional[str] = None, episode: Optional[int] = None,
                 step: Optional[int] = None, field: Optional[str] = None, expected: object = None,
                 got: object = None):
        if file is not None or field is not None:
            message = format_location(file, episode, step, field) + (
                f": expected {expected}, got {got}" if expected is not None else f": {message}")
        if len(message) > MAX_MESSAGE:
            message = message[:MAX_MESSAGE] + f" ... ({len(message) - MAX_MESSAGE:,} more characters)"
        super().__init__(message)


def describe(value: object, limit: int = 80) -> str:
    """A short, bounded description of an untrusted value: no recursion, at most about `limit` characters.

    >>> describe('Left'), describe([1, 2]), describe(np.zeros((2, 3)))
    ("'Left'", 'list of 2', 'ndarray float64[2, 3]')
    """
    if isinstance(value, np.ndarray):
        return f"ndarray {value.dtype}{list(value.shape)}"
    if isinstance(value, (str, bytes, bytearray)):
        text = repr(value[:limit])
        return text + (f" ... ({len(value):,} long)" if len(value) > limit else "")
    if value is None or type(value) in (bool, float) or isinstance(value, np.generic):
        return repr(value)[:limit]
    if type(value) is int:
        return repr(value) if value.bit_length() < 200 else f"an int of {value.bit_length()} bits"
    if isinstance(value, (list, tuple, dict, set, frozenset)):
        return f"{type(value).__name__} of {len(value)}"
    return type(value).__name__


def format_location(file: Optional[str], episode: Optional[int] = None, step: Optional[int] = None,
                    field: Optional[str] = None) -> str:
    parts = [file or "<source>"]
    if episode is not None:
        parts.append(f"episode {episode}")
    if step is not None:
        parts.append(f"step {step}")
    if field is not None:
        parts.append(f"field '{field}'")
    return ", ".join(parts)


@dataclasses.dataclass(frozen=True)
class Field:
    """One stored field: what it is, in which units and range, and how it is encoded."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # numpy dtype name; 'str' for text
    units: str
    range: str
    doc: str
    encoding: str = "tensor"  # 'png' (lossless image), 'bytes' (raw little-endian), 'tensor', 'raw' (bytes as is)

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(object if self.dtype in ("str", "bytes") else self.dtype)


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """One environment variant of the release (DATA_FORMATS.md 0.1)."""

    name: str
    frame_shape: tuple[int, int, int]
    n_z: int
    rnn_size: int
    info_keys: tuple[str, ...]  # the keys its info dicts may hold, in the env's order
    description: str
    gym_id: str  # our gymnasium environment (dropj_datasets.envs), registered on import
    mode: str  # the gym_id's `mode` argument ('' when it has none)
    n_mixtures: int  # Gaussian components of the release's MDN-RNN (dropj.py: 5; obst_dropj.py:144: 7)

    @property
    def make_kwargs(self) -> dict:
        """`gymnasium.make(env.gym_id, **env.make_kwargs)` builds this variant."""
        return {"mode": self.mode} if self.mode else {}

    @property
    def latent_dim(self) -> int:
        """z|c|h: VAE latent, LSTM cell state, LSTM hidden state."""
        return self.n_z + 2 * self.rnn_size


CARRACING_ID = "DropjCarRacing-v0"
OBST_CARRACING_ID = "DropjObstCarRacing-v0"

CARRACING = EnvSpec(
    "carracing", (84, 84, 3), 32, 256, ("crash", "succ", TIME_LIMIT_TRUNCATED),
    "Car Racing (gym 0.20 CarRacing-v0 with the DROPJ reward): 96x96 frames cropped to rows 0:84, "
    "resized to 84x84 and pure black replaced by white", CARRACING_ID, "", 5)
CHUCKC = EnvSpec(
    "chuckc", (128, 128, 3), 64, 1024,
    ("crash", "succ", "chuck_passed", "chuck", TIME_LIMIT_TRUNCATED),
    "Obstacle Car Racing, chuckholes only: 128x128 frames, no indicator bar", OBST_CARRACING_ID, "chuckc", 7)
CHUCKCCAR = EnvSpec(
    "chuckccar", (128, 128, 3), 64, 1024,
    ("crash", "succ", "chuck_passed", "car_passed", "chuck", "car", TIME_LIMIT_TRUNCATED),
    "Obstacle Car Racing, chuckholes and 11 scripted NPC cars: 128x128 frames, no indicator bar",
    OBST_CARRACING_ID, "chuckccar", 7)
# Every environment of the release, by name: the one table models, envs, recorder and CLI read.
ENVS: dict[str, EnvSpec] = {env.name: env for env in (CARRACING, CHUCKC, CHUCKCCAR)}


def env_spec(name: str) -> EnvSpec:
    """The environment called `name` ('carracing', 'chuckc', 'chuckccar'); a KeyError lists them."""
    try:
        return ENVS[name]
    except (KeyError, TypeError):
        raise KeyError(f"unknown environment {str(name)[:40]!r}; known: {', '.join(ENVS)}") from None


@dataclasses.dataclass(frozen=True)
class SourceFiles:
    """Release file names one config is built from (found anywhere under the manual dir)."""

    episodes: str  # Dataset R, or the env-unit dream file
    scaled: Optional[str] = None  # the dream file with scaled actions
    initial_states: tuple[str, ...] = ()  # default_init_obs*.pkl, provenance of dream step 0

    @property
    def all(self) -> tuple[str, ...]:
        return (self.episodes,) + ((self.scaled,) if self.scaled else ()) + self.initial_states


# --- kinds of data ------------------------------------------------------------------------------------

DATASET_SEQUENCE, SEQUENCE = "dataset", "sequence"


@dataclasses.dataclass(frozen=True)
class Kind:
    """One kind of data, declared once: its examples' layout and the module that converts it.

    Which fields it has, which release files it needs and how it is described
    are methods of its spec class (`spec_class`), whose `kind` names this entry.
    `converter` is a `module:attribute` holding a `dropj.converters.kinds.Converter`:
    legacy files -> examples, examples -> legacy files, verify and summary. A new
    kind is an entry here, its spec class and its converter module.
    """

    name: str
    converter: str
    sequences: tuple[tuple[str, str], ...]  # feature group -> DATASET_SEQUENCE (a tf.data of its items) or SEQUENCE
    index_field: str  # '/'-path of the item's position in its source file ('' when it keeps the file's key order)
    doc: str
    config_parameters: tuple[str, ...] = ()  # spec attributes a builder config may override (label weights)

    @property
    def datasets(self) -> tuple[str, ...]:
        """The groups stored as nested datasets (decoded by batching them whole)."""
        return tuple(group for group, how in self.sequences if how == DATASET_SEQUENCE)




def episode_fields(steps: tuple[Field, ...], metadata: tuple[Field, ...]) -> tuple[Field, ...]:
    """An RLDS episode's fields under their full paths: `steps/...` and `episode_metadata/...`."""
    return tuple(dataclasses.replace(f, name=f"{STEPS}/{f.name}") for f in steps) + tuple(
        dataclasses.replace(f, name=f"{EPISODE_METADATA}/{f.name}") for f in metadata)


def _table(fields: tuple[Field, ...]) -> list[str]:
    rows = ["| field | shape | dtype | encoding | units | range | meaning |", "|---|---|---|---|---|---|---|"]
    for f in fields:
        encoding = "text" if f.dtype == "str" else f.encoding
        rows.append(f"| `{f.name}` | {list(f.shape)} | {f.dtype} | {encoding} | {f.units} | {f.range} | {f.doc} |")
    return rows


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """The schema of one builder config of release rollouts (Dataset R or Dataset D)."""

    kind: ClassVar[str] = "episodes"
    config: str
    origin: str  # 'real' (human keyboard rollouts) or 'dream' (world-model rollouts)
    env: EnvSpec
    sources: SourceFiles
    description: str

    @property
    def is_dream(self) -> bool:
        return self.origin == "dream"

    def fields(self) -> tuple[Field, ...]:
        """Every stored field, under its full '/'-path."""
        return episode_fields(self.step_fields(), self.metadata_fields())

    def step_field(self, name: str) -> Field:
        [field] = [f for f in self.step_fields() if f.name == name]
        return field

    def needs(self) -> str:
        """What the config is built from, for the manual download instructions."""
        if self.is_dream:
            return (f"{self.sources.episodes} and/or {self.sources.scaled} (optional, provenance of step 0: "
                    f"{', '.join(self.sources.initial_states)})")
        return self.sources.episodes

    def doc_lines(self) -> list[str]:
        """Its part of docs/schema.md below the heading."""
        return ["Steps:", ""] + _table(self.step_fields()) + ["", "Episode metadata:", ""] + \
            _table(self.metadata_fields())

    @property
    def all_sources(self) -> tuple[str, ...]:
        return self.sources.all

    @property
    def info_keys(self) -> tuple[str, ...]:
        return () if self.is_dream else self.env.info_keys

    @property
    def observation_shape(self) -> tuple[int, ...]:
        return (self.env.latent_dim,) if self.is_dream else self.env.frame_shape

    def step_fields(self) -> tuple[Field, ...]:
        if self.is_dream:
            obs = Field(OBSERVATION, self.observation_shape, "float32", "latent",
                        "z: VAE/MDN sample; c: LSTM cell state; h in (-1, 1)",
                        f"latent state z|c|h = [{self.env.n_z} | {self.env.rnn_size} | {self.env.rnn_size}]; "
                        "step 0 is the float32 view of `initial_state`", "bytes")
        else:
            obs = Field(OBSERVATION, self.observation_shape, "uint8", "RGB pixel", "0..255",
                        "frame s_t, HWC RGB as the study's recorder stored it: Car Racing's 96x96 render cropped to "
                        "rows 0:84, resized to 84x84 (Lanczos) with pure black made white; Obstacle Car Racing's "
                        "128x128 render as is", "png")
        fields = [
            obs,
            Field(ACTION, (3,), "float64", "env units", "steer [-1,1], gas [0,1], brake [0,1]",
                  "[steer, gas, brake] applied in s_t; keyboard subset steer {-1,0,1}, gas {0,1}, "
                  "brake {0,0.8}; zeros on the last step; NaN where the source has no env-unit file",
                  "bytes"),
        ]
        if self.is_dream:
            fields.append(Field(ACTION_SCALED, (3,), "float64", "scaled", "[-1, 1]",
                                "the same action scaled by 2(a-low)/(high-low)-1 as in the `_scaled` "
                                "release file; NaN where that file is absent; zeros on the last step",
                                "bytes"))
        fields += [
            Field(REWARD, (), "int32", "reward", "{-1, 0, +10} (dream: 0)",
                  "reward for action_t (the source's Python int); 0 on the last step"),
            Field(DISCOUNT, (), "float32", "", "{0, 1}", "0 on a terminal last step, else 1"),
            Field(IS_FIRST, (), "bool", "", "", "true on step 0"),
            Field(IS_LAST, (), "bool", "", "", "true on the extra final step holding s_T"),
            Field(IS_TERMINAL, (), "bool", "", "",
                  "true on the last step of an episode that ended by leaving the playfield"),
        ]
        fields += [
            Field(f"{INFO}/{INFO_FEATURE_NAMES[key]}", (), "int8", "tri-state", "-1 absent, 0 False, 1 True",
                  f"info['{key}']: {INFO_DOCS[key]}")
            for key in self.info_keys
        ]
        return tuple(fields)

    def metadata_fields(self) -> tuple[Field, ...]:
        fields = [
            Field(SOURCE_FILE, (), "str", "", "", "release file the episode was read from"),
            Field(EPISODE_INDEX, (), "int64", "", ">= 0", "index of the episode in that file"),
            Field(FINAL_DONE, (), "float64", "", "{0.0, 1.0}",
                  "the `done` float of the last transition (every earlier one is 0.0)", "bytes"),
            Field(PICKLE_PROTOCOL, (), "int32", "", "2..5", "pickle protocol of the source file"),
        ]
        if self.is_dream:
            fields += [
                Field(SOURCE_FILE_SCALED, (), "str", "", "", "the `_scaled` release file ('' if absent)"),
                Field(INITIAL_STATE, (self.env.latent_dim,), "float64", "latent", "",
                      "the exact float64 step-0 state (prev_obs of transition 0)", "bytes"),
                Field(INITIAL_STATE_FILE, (), "str", "", "",
                      "default_init_obs*.pkl file holding an identical state ('' if none was given)"),
                Field(INITIAL_STATE_INDEX, (), "int32", "", "-1 or >= 0",
                      "index of that state in the file (0 for a single-array file, -1 if not found)"),
            ]
        return tuple(fields)


# --- human feedback (DATA_FORMATS.md 4-5) ---------------------------------------------------------------
QUERY_ID = "query_id"
QUERY_INDEX = "query_index"
RESPONSE_INDEX = "response_index"
LEFT = "left"
RIGHT = "right"
RESPONSE = "response"
SKIPPED = "skipped"
ANSWERS = "answers"
QUESTION = "question"
ANSWER = "answer"
SECONDS = "seconds"
REPEAT_COUNT = "repeat_count"
TOTAL_TIME = "total_time"
ANNOTATOR = "annotator"
USER_ID = "user_id"
METHOD = "method"
PREFERENCE = "preference"
JUSTIFICATION = "justification"
LABEL = "label"
HAS_LABEL = "has_label"

# Keys of one response entry in the release files, and the strings the GUIs wrote.
RESPONSE_KEYS = ("video", "responses", "repeat_count", "total_time")
SKIPPED_ANSWER = "Skipped"
Q_PREFER = "Which clip do you prefer?"
Q_LEFT_SAFE = "Does the left car stay safe?"
Q_RIGHT_SAFE = "Does the right car stay safe?"
Q_JUSTIFICATION = "Please give Justification"
Q_PREFERENCE = "Please give Preference"
A_LEFT, A_RIGHT, A_EQUALLY, A_YES, A_NO = "Left", "Right", "Equally", "Yes", "No"


SEGMENT_STEPS = 20
VIDEO = "video"
SKETCH_INDEX = "sketch_index"
FEEDBACK_SESSION = "feedback_session"
NEXT_OBSERVATION = "next_observation"


def segment_fields(env: EnvSpec) -> tuple[Field, ...]:
    """One step of a query clip: a row of a data.pkl segment, split into its parts."""
    return (
        Field(OBSERVATION, (env.latent_dim,), "float64", "latent", "",
              "prev_obs of a dream step, z|c|h (the first columns of a data.pkl segment row)", "bytes"),
        Field(ACTION, (3,), "float64", "scaled", "[-1, 1]",
              "the scaled action of that step (the last 3 columns of the row)", "bytes"),
    )


def query_fields(env: EnvSpec) -> tuple[Field, ...]:
    """What identifies a query and its two clips (DATA_FORMATS.md 4.1)."""
    return (
        Field(QUERY_ID, (), "str", "", "'0.mp4' ...", "the query's video name, its key in data.pkl"),
        Field(QUERY_INDEX, (), "int32", "", ">= 0", "the number in the video name"),
        *[Field(f"{side}/{f.name}", (SEGMENT_STEPS,) + f.shape, f.dtype, f.units, f.range,
                f"{'left (segment1)' if side == LEFT else 'right (segment2)'} clip, 20 steps: {f.doc}", f.encoding)
          for side in (LEFT, RIGHT) for f in segment_fields(env)],
    )


@dataclasses.dataclass(frozen=True)
class QuerySpec:
    """The schema of the `queries` config: each query's two clips and its video, as released."""

    config: str
    env: EnvSpec
    queries_file: str  # release path of data.pkl; the videos {i}.mp4 sit beside it
    description: str
    kind: ClassVar[str] = "queries"

    @property
    def folder(self) -> str:
        return self.queries_file.rsplit("/", 1)[0]

    @property
    def all_sources(self) -> tuple[str, ...]:
        return (self.queries_file,)

    def needs(self) -> str:
        return f"{self.queries_file} and every video {self.folder}/N.mp4 it names"

    def doc_lines(self) -> list[str]:
        return ["One example per query, in data.pkl order:", ""] + _table(self.fields())

    def fields(self) -> tuple[Field, ...]:
        return (
            *query_fields(self.env),
            Field(VIDEO, (), "bytes", "mp4", "",
                  "the query's video exactly as released (H.264, 1000x500, 20 frames at 2.5 fps; "
                  "decode with dropj.loaders.video.decode)", "raw"),
        )


@dataclasses.dataclass(frozen=True)
class SketchSpec:
    """ReQueST / DROS query data: sketches of up to 49 transitions labelled -1/0/+10 (DATA_FORMATS.md 6)."""

    config: str
    env: EnvSpec
    sketches_file: str
    times_file: str  # kept whole in the dataset's metadata
    dtype: str  # of states and actions: float32 (ReQueST) or float64 (DROS)
    sketches_per_session: int  # 15 for ReQueST (one per initial state); 0 when there are no sessions
    description: str
    companion_files: tuple[str, ...] = ()  # optional release files kept whole in metadata.json
    kind: ClassVar[str] = "sketches"

    @property
    def all_sources(self) -> tuple[str, ...]:
        return (self.sketches_file, self.times_file) + self.companion_files

    def fields(self) -> tuple[Field, ...]:
        return episode_fields(self.step_fields(), self.metadata_fields())

    def needs(self) -> str:
        companions = f" (optional, kept whole: {', '.join(self.companion_files)})" if self.companion_files else ""
        return f"{self.sketches_file} and {self.times_file}{companions}"

    def doc_lines(self) -> list[str]:
        kept = ", ".join(f"`{name}`" for name in (self.times_file, *self.companion_files))
        return [f"One episode per sketch; {kept} (those present) are kept whole in the dataset's `metadata.json`.", "",
                "Steps:", ""] + _table(self.step_fields()) + ["", "Episode metadata:", ""] + \
            _table(self.metadata_fields())

    def step_fields(self) -> tuple[Field, ...]:
        enc = "bytes" if self.dtype == "float64" else "tensor"
        dim = self.env.latent_dim
        return (
            Field(OBSERVATION, (dim,), self.dtype, "latent", "", "s: the state the label was given in, z|c|h", enc),
            Field(ACTION, (3,), self.dtype, "env units", "clamped to the action box", "a, not scaled", enc),
            Field(REWARD, (), "float64", "class reward", "{-1, 0, +10}",
                  "the person's label: -1 Grass/Kerbs, 0 Road, +10 New Tile (a numpy.float64 in the source)",
                  "bytes"),
            Field(NEXT_OBSERVATION, (dim,), self.dtype, "latent", "",
                  "s_next. Kept per step: steps the person skipped are absent from the sketch, so s_next "
                  "need not equal the next step's observation", enc),
            Field(IS_FIRST, (), "bool", "", "", "true on the first labelled step"),
            Field(IS_LAST, (), "bool", "", "", "true on the last labelled step"),
            Field(IS_TERMINAL, (), "bool", "", "", "always false: a sketch is a cut of a dream trajectory"),
        )

    def metadata_fields(self) -> tuple[Field, ...]:
        fields = [
            Field(SOURCE_FILE, (), "str", "", "", "release file the sketch was read from"),
            Field(SKETCH_INDEX, (), "int64", "", ">= 0", "index of the sketch in that file"),
        ]
        if self.sketches_per_session:
            fields.append(Field(FEEDBACK_SESSION, (), "int32", "", ">= 0",
                                f"the feedback session ({self.sketches_per_session} sketches each, one per "
                                "initial state)"))
        return tuple(fields)


@dataclasses.dataclass(frozen=True)
class FeedbackSpec:
    """The schema of one preference config: a query (two segments) and one person's response.

    `method` selects the paper's label rule (DATA_FORMATS.md 5.3): 'DROP'
    (Left/Right), 'DROPe' (adds Equally), 'DROPJ' (safety of each clip, then
    a preference when both are safe) or 'multi-justification' (one
    justification and a preference, obstacle envs).
    """

    config: str
    method: str
    env: EnvSpec
    queries_file: str  # release path of data.pkl (its folder disambiguates it)
    responses_file: str
    user_id: int
    justifications: tuple[str, ...]  # the answers Q_JUSTIFICATION allows (multi-justification only)
    description: str
    # Label-rule weights (builder-config parameters; these are the defaults).
    w_s: float = 1.0  # DROPJ: label when only the left clip is safe (dropj.py:293)
    w_def: float = 0.75  # DROPJ: label for Left when both are safe (dropj.py:294)
    just_weights: tuple[tuple[str, float], ...] = ()  # multi-justification: label for Left given J
    kind: ClassVar[str] = "preferences"

    def needs(self) -> str:
        return f"{self.queries_file} and {self.responses_file}"

    def doc_lines(self) -> list[str]:
        weights = f"w_s={self.w_s}, w_def={self.w_def}" if self.method == "DROPJ" else (
            ", ".join(f"{j}={w}" for j, w in self.just_weights) if self.just_weights else "none")
        return [f"Feedback method: {self.method} (user {self.user_id}); default label weights: {weights}. "
                "One example per response entry:", ""] + _table(self.fields())

    @property
    def all_sources(self) -> tuple[str, ...]:
        return (self.queries_file, self.responses_file)

    @property
    def answers_have_seconds(self) -> bool:
        """The Car Racing GUI stored (question, answer, seconds); the obstacle GUI (question, answer)."""
        return self.method != "multi-justification"

    def segment_fields(self) -> tuple[Field, ...]:
        return segment_fields(self.env)

    def fields(self) -> tuple[Field, ...]:
        answers = f"{RESPONSE}/{ANSWERS}"
        return (
            *query_fields(self.env),
            Field(RESPONSE_INDEX, (), "int32", "", ">= 0",
                  "position in the responses file (the paper trains on the first 400 or 500)"),
            Field(f"{RESPONSE}/{SKIPPED}", (), "bool", "", "", "the person skipped the query (no answers)"),
            Field(f"{answers}/{QUESTION}", (None,), "str", "", "", "each question asked, in order"),
            Field(f"{answers}/{ANSWER}", (None,), "str", "", "", "the answer given to it"),
            Field(f"{answers}/{SECONDS}", (None,), "float64", "s", ">= 0",
                  "time since the previous answer (or since the query loaded); NaN where the GUI "
                  "recorded no times (obstacle envs)", "bytes"),
            Field(f"{RESPONSE}/{REPEAT_COUNT}", (), "int32", "", ">= 0", "presses of 'Repeat Video'"),
            Field(f"{RESPONSE}/{TOTAL_TIME}", (), "float64", "s", "> 0",
                  "from query load to the last answer, or to Skip", "bytes"),
            Field(f"{ANNOTATOR}/{USER_ID}", (), "int32", "", "", "the participant (from the file name)"),
            Field(f"{ANNOTATOR}/{METHOD}", (), "str", "", "DROP, DROPe, DROPJ, multi-justification",
                  "the feedback method, which fixes the questions and the label rule"),
            Field(PREFERENCE, (), "str", "", "Left, Right, Equally or ''",
                  "the answer to the preference question ('' if none was asked or the query was skipped)"),
            Field(JUSTIFICATION, (), "str", "", "",
                  "DROPJ: the two safety answers as 'left/right', e.g. 'Yes/No'; "
                  "multi-justification: Default, Grass, Chuckhole or Car; '' otherwise"),
            Field(LABEL, (), "float64", "P(left preferred)", "[0, 1]; NaN when absent",
                  "the training label of the paper's rule for this method (docs/labels.md)", "bytes"),
            Field(HAS_LABEL, (), "bool", "", "", "false for skipped queries, which get no label"),
        )


KINDS: dict[str, Kind] = {kind.name: kind for kind in (
    Kind("episodes", "dropj.converters.rollouts:CONVERTER", ((STEPS, DATASET_SEQUENCE),),
         f"{EPISODE_METADATA}/{EPISODE_INDEX}", "RLDS episodes of a release rollout file (Dataset R or D)"),
    Kind("recordings", "dropj.converters.rollouts:RECORDINGS", ((STEPS, DATASET_SEQUENCE),),
         f"{EPISODE_METADATA}/{EPISODE_INDEX}", "RLDS episodes recorded with `dropj record`"),
    Kind("sketches", "dropj.converters.sketches:CONVERTER", ((STEPS, DATASET_SEQUENCE),),
         f"{EPISODE_METADATA}/{SKETCH_INDEX}", "ReQueST / DROS sketches as RLDS episodes"),
    Kind("queries", "dropj.converters.feedback:QUERIES", ((LEFT, DATASET_SEQUENCE), (RIGHT, DATASET_SEQUENCE)),
         "", "preference queries: two clips and the video shown"),
    Kind("preferences", "dropj.converters.feedback:PREFERENCES",
         ((LEFT, DATASET_SEQUENCE), (RIGHT, DATASET_SEQUENCE), (ANSWERS, SEQUENCE)),
         RESPONSE_INDEX, "one person's responses to the queries, with labels", ("w_s", "w_def", "just_weights")),
    Kind("encoded", "dropj.converters.encode:CONVERTER", ((STEPS, DATASET_SEQUENCE),),
         f"{EPISODE_METADATA}/{EPISODE_INDEX}", "real episodes encoded to latent states with `dropj encode`"),
    Kind("annotations", "dropj.converters.annotations:CONVERTER",
         ((LEFT, DATASET_SEQUENCE), (RIGHT, DATASET_SEQUENCE), (ANSWERS, SEQUENCE)),
         RESPONSE_INDEX, "preferences collected in the browser with `dropj annotate`"),
)}


Spec = "DatasetSpec | FeedbackSpec | QuerySpec | SketchSpec"
DATASETS: dict[str, dict[str, Spec]] = {
    "dropj_carracing": {
        "real": DatasetSpec("real", "real", CARRACING, SourceFiles("raw_user_rollouts_res84_ep600.pkl"),
                            "Dataset R: 600 human keyboard episodes of Car Racing, 84x84 frames"),
        "dream": DatasetSpec(
            "dream", "dream", CARRACING,
            SourceFiles("dream_user_rollouts.pkl", "dream_user_rollouts_scaled.pkl", ("default_init_obs.pkl",)),
            "Dataset D: human keyboard episodes in the Car Racing world model, 544-d latent states"),
        "preferences_drop": FeedbackSpec(
            "preferences_drop", "DROP", CARRACING, "queries_s20/data.pkl",
            "responses_user26_s20_q600_drop.pkl", 26, (),
            "DROP: user 26's plain preferences (Left/Right) over 600 Car Racing query clips"),
        "preferences_drope": FeedbackSpec(
            "preferences_drope", "DROPe", CARRACING, "queries_s20/data.pkl",
            "responses_user27_s20_q600_drope.pkl", 27, (),
            "DROPe: user 27's preferences with 'Equally' over the 600 Car Racing query clips"),
        "preferences_dropj": FeedbackSpec(
            "preferences_dropj", "DROPJ", CARRACING, "queries_s20/data.pkl",
            "responses_user27_s20_q600_dropj.pkl", 27, (),
            "DROPJ: user 27's safety justifications, then preferences, over the 600 Car Racing query clips"),
        "queries": QuerySpec(
            "queries", CARRACING, "queries_s20/data.pkl",
            "The Car Racing preference queries: two 20-step dream clips each, and the video people saw"),
        "request": SketchSpec(
            "request", CARRACING, "request_query_data_guiTrue_rewep200_rewinitFalse_gdit200.pkl",
            "request_traj_opt_times_guiTrue_rewep200_rewinitFalse_gdit200.pkl", "float32", 15,
            "ReQueST: sketches of optimised dream trajectories with the person's per-step reward labels",
            ("request_all_query_times_guiTrue_rewep200_rewinitFalse_gdit200.pkl",
             "request_rew_perf_evals_guiTrue_rewep200_rewinitFalse_gdit200.pkl",
             "request_rew_perf_evals_clean_guiTrue_rewep200_rewinitFalse_gdit200.pkl",
             "default_init_obses_ep600enc_15.pkl")),
        "dros": SketchSpec(
            "dros", CARRACING, "dros_query_data_rewep200.pkl", "dros_all_query_times_rewep200_.pkl", "float64", 0,
            "DROS: sketches cut from the dream rollouts with the person's per-step reward labels"),
    },
    "dropj_obst_carracing": {
        "chuckc_real": DatasetSpec(
            "chuckc_real", "real", CHUCKC, SourceFiles("raw_user_rollouts_res128_ep600_chuckcobst.pkl"),
            "Dataset R: 600 human keyboard episodes of Obstacle Car Racing with chuckholes, 128x128 frames"),
        "chuckccar_real": DatasetSpec(
            "chuckccar_real", "real", CHUCKCCAR, SourceFiles("raw_user_rollouts_res128_ep800_chuckccarobst.pkl"),
            "Dataset R: 800 human keyboard episodes of Obstacle Car Racing with chuckholes and cars"),
        "chuckc_dream": DatasetSpec(
            "chuckc_dream", "dream", CHUCKC,
            SourceFiles("dream_user_rollouts_chuckcobst.pkl", "dream_user_rollouts_chuckcobst_scaled.pkl",
                        ("default_init_obses_chuckcobst.pkl", "default_init_obs_chuckcobst.pkl")),
            "Dataset D: episodes in the chuckhole world model, 2112-d latent states"),
        "chuckccar_dream": DatasetSpec(
            "chuckccar_dream", "dream", CHUCKCCAR,
            SourceFiles("dream_user_rollouts_chuckccarobst.pkl", "dream_user_rollouts_chuckccarobst_scaled.pkl",
                        ("default_init_obses_chuckccarobst.pkl", "default_init_obs_chuckccarobst.pkl")),
            "Dataset D: episodes in the chuckhole-and-cars world model, 2112-d latent states"),
        "chuckc_queries": QuerySpec(
            "chuckc_queries", CHUCKC, "queries_s20_chuckcobst/data.pkl",
            "The chuckhole preference queries: two 20-step dream clips each, and the video people saw"),
        "chuckccar_queries": QuerySpec(
            "chuckccar_queries", CHUCKCCAR, "queries_s20_chuckccarobst/data.pkl",
            "The chuckhole-and-cars preference queries: two 20-step dream clips each, and the video people saw"),
        "chuckc_preferences": FeedbackSpec(
            "chuckc_preferences", "multi-justification", CHUCKC, "queries_s20_chuckcobst/data.pkl",
            "responses_chuckcobst_user44_mjust.pkl", 44, ("Default", "Grass", "Chuckhole"),
            "User 44's justified preferences (Default, Grass or Chuckhole) over chuckhole query clips",
            just_weights=(("Default", 0.75), ("Grass", 1.0), ("Chuckhole", 1.0))),  # obst_dropj.py:315-325
        "chuckccar_preferences": FeedbackSpec(
            "chuckccar_preferences", "multi-justification", CHUCKCCAR, "queries_s20_chuckccarobst/data.pkl",
            "responses_chuckccarobst_user45_mjust.pkl", 45, ("Default", "Grass", "Chuckhole", "Car"),
            "User 45's justified preferences (Default, Grass, Chuckhole or Car) over chuckhole-and-car clips",
            just_weights=(("Default", 1.0), ("Grass", 1.0), ("Chuckhole", 1.0), ("Car", 1.0))),
    },
}


# --- new recordings (`dropj record`; DATA_FORMATS.md 1 and 8) --------------------------------------------
RECORDING_DATASET = "dropj_recording"
WALL_TIME = "wall_time"
KEYS_HELD = "keys_held"
KEYS = ("left", "right", "up", "down")  # the order of `keys_held`
USER_ID_TEXT = "user_id"
SESSION_ID = "session_id"
ENV_ID = "env_id"
ENV_MODE = "env_mode"
SEED = "seed"
DROPJ_VERSION = "dropj_version"
GYMNASIUM_VERSION = "gymnasium_version"
START_TIME = "start_time"
TIME_LIMIT = "time_limit"
RECORDED_PICKLE_PROTOCOL = 5  # what the authors' recorder wrote (pickle.HIGHEST_PROTOCOL under Python 3.8)
DREAM_PICKLE_PROTOCOL = 4  # the release's dream rollouts (`user_extract_dream.py`)
RESPONSES_PICKLE_PROTOCOL = 4  # what the authors' GUIs wrote (pickle.DEFAULT_PROTOCOL under Python 3.8)


@dataclasses.dataclass(frozen=True)
class RecordingSpec(DatasetSpec):
    """A directory written by `dropj record`: Dataset R's steps plus what the recorder saw.

    Steps are those of the release's `real` configs (same observation,
    action, reward, discount, flags and info tri-states, same alignment),
    plus two step-metadata fields. The episode metadata names who drove,
    when, in which environment and with which seed. `sources.episodes` is the
    export name pattern; `{n}` becomes the number of episodes.
    """

    kind: ClassVar[str] = "recordings"

    def needs(self) -> str:
        return "a live session: `dropj record`"

    def step_fields(self) -> tuple[Field, ...]:
        return super().step_fields() + (
            Field(WALL_TIME, (), "float64", "s since the Unix epoch", "",
                  "wall-clock time when observation s_t was returned to the driver", "bytes"),
            Field(KEYS_HELD, (len(KEYS),), "bool", "", "",
                  "arrow keys held when action_t was read: " + ", ".join(KEYS) + "; all false on the last step"),
        )

    def metadata_fields(self) -> tuple[Field, ...]:
        return (
            Field(EPISODE_INDEX, (), "int64", "", ">= 0", "index of the episode in the recording directory"),
            Field(USER_ID_TEXT, (), "str", "", "", "the driver (as given to `dropj record --user`)"),
            Field(SESSION_ID, (), "str", "", "", "one `dropj record` run: UTC start time and a random suffix"),
            Field(ENV_ID, (), "str", "", "", "gymnasium id of the environment"),
            Field(ENV_MODE, (), "str", "", "'', chuckc, chuckccar", "the obstacle env's mode ('' for Car Racing)"),
            Field(SEED, (), "int64", "", ">= 0", "reset seed: `env.reset(seed=...)` rebuilds the track"),
            Field(DROPJ_VERSION, (), "str", "", "", "version of this package that recorded"),
            Field(GYMNASIUM_VERSION, (), "str", "", "", "gymnasium version that ran the environment"),
            Field(START_TIME, (), "float64", "s since the Unix epoch", "", "when the episode was reset", "bytes"),
            Field(TIME_LIMIT, (), "int32", "steps", ">= 1",
                  "the episode's step limit (the study's 1000; `dropj record --max_steps`)"),
            Field(FINAL_DONE, (), "float64", "", "1.0 (dream: 0.0)",
                  "the `done` of the last transition, as the release's recorder wrote it (a dream never ends: 0.0)",
                  "bytes"),
            Field(PICKLE_PROTOCOL, (), "int32", "", "5 (dream: 4)", "protocol `dropj export` writes (the release's)"),
        ) + ((Field(INITIAL_STATE, (self.env.latent_dim,), "float64", "latent", "",
                    "the exact float64 start state of the dream episode", "bytes"),) if self.is_dream else ())


RECORDINGS: dict[str, RecordingSpec] = {
    env.name: RecordingSpec(
        env.name, "real", env, SourceFiles(pattern),
        f"Human keyboard episodes of {env.description.split(':')[0]} recorded with `dropj record`")
    for env, pattern in ((CARRACING, "raw_user_rollouts_res84_ep{n}.pkl"),
                         (CHUCKC, "raw_user_rollouts_res128_ep{n}_chuckcobst.pkl"),
                         (CHUCKCCAR, "raw_user_rollouts_res128_ep{n}_chuckccarobst.pkl"))
}


# Dream recordings: a person driving inside the world model (`DropjDream-v0`), exported as the release's
# dream pickles (unscaled and scaled).
DREAM_RECORDINGS: dict[str, RecordingSpec] = {
    f"{env.name}_dream": RecordingSpec(
        f"{env.name}_dream", "dream", env, dataclasses.replace(DATASETS[dataset][config].sources, initial_states=()),
        f"Human keyboard episodes in the {env.name} world model, recorded with `dropj record --env dream`")
    for env, dataset, config in ((CARRACING, "dropj_carracing", "dream"),
                                 (CHUCKC, "dropj_obst_carracing", "chuckc_dream"),
                                 (CHUCKCCAR, "dropj_obst_carracing", "chuckccar_dream"))
}


# --- new human feedback (`dropj annotate`; DATA_FORMATS.md 5) ------------------------------------------
ANNOTATION_DATASET = "dropj_annotations"
ANNOTATION = "annotation"
USER_AGENT = "user_agent"
ANSWERED_AT = "answered_at"


@dataclasses.dataclass(frozen=True)
class AnnotationSpec(FeedbackSpec):
    """A directory written by `dropj annotate`: a preferences config's examples plus who answered, when, how.

    The examples are those of the release's `preferences_*` configs (same
    query clips, answers, times and label rule); `response_index` counts the
    answered queries of the directory in order. `responses_file` is the export
    name pattern: `{user}` and `{n}` become the annotator and their number of
    responses, as in the release's file names.
    """

    kind: ClassVar[str] = "annotations"

    def needs(self) -> str:
        return "annotation sessions (`dropj.converters.annotations.Annotations`)"

    def fields(self) -> tuple[Field, ...]:
        return super().fields() + (
            Field(f"{ANNOTATION}/{SESSION_ID}", (), "str", "", "",
                  "one annotator's session: UTC start time and a random suffix"),
            Field(f"{ANNOTATION}/{START_TIME}", (), "float64", "s since the Unix epoch", "",
                  "when the session started (the server's clock)", "bytes"),
            Field(f"{ANNOTATION}/{ANSWERED_AT}", (), "float64", "s since the Unix epoch", "",
                  "when the server committed this response", "bytes"),
            Field(f"{ANNOTATION}/{USER_AGENT}", (), "str", "", "", "the annotator's browser, as it named itself"),
            Field(f"{ANNOTATION}/{DROPJ_VERSION}", (), "str", "", "", "version of this package that collected it"),
        )


ANNOTATIONS: dict[str, AnnotationSpec] = {
    name: AnnotationSpec(
        name, preset.method, preset.env, preset.queries_file, f"responses_user{{user}}_s20_q{{n}}_{name}.pkl", 0,
        preset.justifications, f"New {preset.method} preferences over the study's queries, collected with "
        "the study's questions",
        preset.w_s, preset.w_def, preset.just_weights)
    for name, preset in (("drop", DATASETS["dropj_carracing"]["preferences_drop"]),
                         ("drope", DATASETS["dropj_carracing"]["preferences_drope"]),
                         ("dropj", DATASETS["dropj_carracing"]["preferences_dropj"]),
                         ("mjust", DATASETS["dropj_obst_carracing"]["chuckccar_preferences"]))
}
# --- real episodes encoded to latent states (`dropj encode`; DATA_FORMATS.md 0.2) ------------------------
ENCODED_DATASET = "dropj_encoded"
SOURCE_DATASET = "source_dataset"
VAE_SHA256 = "vae_sha256"
MDNRNN_SHA256 = "mdnrnn_sha256"


@dataclasses.dataclass(frozen=True)
class EncodedSpec(DatasetSpec):
    """A directory written by `dropj encode`: real episodes as latent episodes, aligned as the dream configs.

    Step t's observation is ``[z_t | c_t | h_t]`` float32: z_t the VAE mean of frame t, (c_t, h_t) the
    LSTM state after ``[z_0, a_0] … [z_{t-1}, a_{t-1}]`` from zeros. Actions (env units and scaled),
    rewards, discounts and the is_* flags are the source episode's; its info flags are not repeated.
    """

    kind: ClassVar[str] = "encoded"

    def needs(self) -> str:
        return "a built real config and VAE and MDN-RNN checkpoints (`dropj encode`)"

    def step_fields(self) -> tuple[Field, ...]:
        observation, *rest = super().step_fields()
        return (dataclasses.replace(observation, doc=(
            f"latent state z|c|h = [{self.env.n_z} | {self.env.rnn_size} | {self.env.rnn_size}]: z the VAE mean "
            "of frame t, (c, h) the MDN-RNN's LSTM state after the steps before t, from zeros")), *rest)

    def metadata_fields(self) -> tuple[Field, ...]:
        return (
            Field(EPISODE_INDEX, (), "int64", "", ">= 0", "index of the episode in this directory"),
            Field(SOURCE_DATASET, (), "str", "", "", "the encoded config, NAME/CONFIG"),
            Field(SOURCE_FILE, (), "str", "", "", "the release file the source episode came from ('' if none)"),
            Field(f"source_{EPISODE_INDEX}", (), "int64", "", ">= 0", "the episode's index in the source config"),
            Field(VAE_SHA256, (), "str", "", "64 hex digits", "SHA-256 of the VAE checkpoint file"),
            Field(MDNRNN_SHA256, (), "str", "", "64 hex digits", "SHA-256 of the MDN-RNN checkpoint file"),
            Field(FINAL_DONE, (), "float64", "", "{0.0, 1.0}", "the source's last `done`", "bytes"),
        )


ENCODED: dict[str, EncodedSpec] = {
    env.name: EncodedSpec(env.name, "dream", env, SourceFiles(""),
                          f"Real episodes of {env.description.split(':')[0]} encoded to latent states z|c|h by "
                          "a VAE and an MDN-RNN (what the paper's MDN-RNN trained on)")
    for env in (CARRACING, CHUCKC, CHUCKCCAR)
}
# Datasets written by our own tools rather than built from release files: name -> configs.
WRITTEN: dict[str, dict[str, Spec]] = {RECORDING_DATASET: {**RECORDINGS, **DREAM_RECORDINGS},
                                       ANNOTATION_DATASET: ANNOTATIONS,
                                       ENCODED_DATASET: ENCODED}


def spec_for(dataset: str, config: str) -> Spec:
    try:
        return {**DATASETS, **WRITTEN}[dataset][config]
    except (KeyError, TypeError):
        known = ", ".join(f"{d}/{c}" for d, cs in {**DATASETS, **WRITTEN}.items() for c in cs)
        raise KeyError(f"unknown dataset config {dataset}/{config}; known: {known}") from None


def scale_action(action: np.ndarray) -> np.ndarray:
    """Env units -> [-1, 1] exactly as the release's `_scaled` files (DATA_FORMATS.md 0.3)."""
    scaled = 2.0 * (action - ACTION_LOW) / (ACTION_HIGH - ACTION_LOW) - 1.0
    return np.clip(scaled, -1.0, 1.0)


def markdown() -> str:
    """`docs/schema.md`, generated from the specs above (`dropj schema-doc`)."""
    contract = __doc__.split("RLDS alignment contract\n-----------------------\n", 1)[1].strip()
    out = [
        "# Schema of the DROPJ RLDS datasets",
        "",
        "Generated by `dropj schema-doc > docs/schema.md` from `dropj_datasets/schema.py`; "
        "a test fails when this file is stale. Do not edit by hand.",
        "",
        "## RLDS alignment contract",
        "",
        contract,
        "",
        "Encodings: `png` = lossless PNG image; `bytes` = the raw little-endian values "
        "(float64 would otherwise be narrowed to float32 by `tf.train.Example`); `tensor` = plain "
        "TFDS tensor; `text` = UTF-8 string; `raw` = a file's bytes exactly as released.",
    ]

    for dataset, configs in DATASETS.items():
        out += ["", f"## `{dataset}`"]
        for config, spec in configs.items():
            files = ", ".join(f"`{name}`" for name in spec.all_sources)
            out += ["", f"### `{dataset}/{config}`", "", spec.description + ".", "",
                    f"Environment: {spec.env.description}. Source files: {files}.", ""] + spec.doc_lines()
    out += ["", f"## `{RECORDING_DATASET}`: new recordings", "",
            "Written by `dropj record` (docs/recording.md) into a directory that `tfds.builder_from_directory` "
            "reads. One config per environment; the steps are the `real` configs' plus two step-metadata fields."]
    for config, spec in {**RECORDINGS, **DREAM_RECORDINGS}.items():
        files = " and ".join(f"`{name}`" for name in (spec.sources.episodes, spec.sources.scaled) if name)
        out += ["", f"### `{RECORDING_DATASET}/{config}`", "", spec.description + ".", "",
                f"Environment: {spec.env.description}. `dropj export` writes {files}.", ""] + spec.doc_lines()
    out += ["", f"## `{ANNOTATION_DATASET}`: new human feedback", "",
            "Written by the annotation store (`dropj.converters.annotations`, docs/feedback.md), one config per "
            "feedback method, into a directory that `tfds.builder_from_directory` reads. The examples are the "
            "`preferences_*` configs' plus who answered, when and in which browser."]
    for config, spec in ANNOTATIONS.items():
        out += ["", f"### `{ANNOTATION_DATASET}/{config}`", "", spec.description + ".", "",
                f"Environment: {spec.env.description}. Queries: `{spec.queries_file}` and its videos. "
                f"`dropj export` writes `{spec.responses_file}` per annotator.", ""] + spec.doc_lines()
    out += ["", f"## `{ENCODED_DATASET}`: real episodes as latent states", "",
            "Written by `dropj encode` (docs/training.md) into a directory that `tfds.builder_from_directory` "
            "reads. One config per environment; the steps are aligned as the dream configs'."]
    for config, spec in ENCODED.items():
        out += ["", f"### `{ENCODED_DATASET}/{config}`", "", spec.description + ".", "",
                f"Environment: {spec.env.description}.", ""] + spec.doc_lines()
    return "\n".join(out) + "\n"
