"""The release's configs (`DATASETS`) and their spec classes: episodes, queries, sketches, preferences.

The TFDS builders (`dropj_datasets.builder`), the exporter and verifier
(`dropj.converters`) and `docs/schema.md` are all driven by these specs, so
they cannot drift apart.

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

from .keys import (
    ACTION,
    ACTION_SCALED,
    ANNOTATOR,
    ANSWER,
    ANSWERS,
    DISCOUNT,
    EPISODE_INDEX,
    EPISODE_METADATA,
    FEEDBACK_SESSION,
    FINAL_DONE,
    HAS_LABEL,
    INFO,
    INFO_DOCS,
    INFO_FEATURE_NAMES,
    INITIAL_STATE,
    INITIAL_STATE_FILE,
    INITIAL_STATE_INDEX,
    IS_FIRST,
    IS_LAST,
    IS_TERMINAL,
    JUSTIFICATION,
    LABEL,
    LEFT,
    METHOD,
    NEXT_OBSERVATION,
    OBSERVATION,
    PICKLE_PROTOCOL,
    PREFERENCE,
    QUERY_ID,
    QUERY_INDEX,
    QUESTION,
    REPEAT_COUNT,
    RESPONSE,
    RESPONSE_INDEX,
    REWARD,
    RIGHT,
    SECONDS,
    SEGMENT_STEPS,
    SKETCH_INDEX,
    SKIPPED,
    SOURCE_FILE,
    SOURCE_FILE_SCALED,
    STEPS,
    TOTAL_TIME,
    USER_ID,
    VIDEO,
)
from .kinds import (DATASET_SEQUENCE, FRAMES, LABELLED_PAIRS, LABELLED_STEPS, LATENT_STATES, QUERY_VIEW, RESPONSE_VIEW,
                    SEQUENCE, Kind)
from .fields import Field, episode_fields, field_table
from .envs import CARRACING, CHUCKC, CHUCKCCAR, EnvSpec


@dataclasses.dataclass(frozen=True)
class SourceFiles:
    """Release file names one config is built from (found anywhere under the manual dir)."""

    episodes: str  # Dataset R, or the env-unit dream file
    scaled: Optional[str] = None  # the dream file with scaled actions
    initial_states: tuple[str, ...] = ()  # default_init_obs*.pkl, provenance of dream step 0

    @property
    def all(self) -> tuple[str, ...]:
        return (self.episodes,) + ((self.scaled,) if self.scaled else ()) + self.initial_states


EPISODES_KIND = Kind("episodes", "dropj.converters.release.rollouts:CONVERTER", ((STEPS, DATASET_SEQUENCE),),
                     f"{EPISODE_METADATA}/{EPISODE_INDEX}", "RLDS episodes of a release rollout file (Dataset R or D)",
                     extra_last_step=True, content=FRAMES, dream_content=LATENT_STATES)


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """The schema of one builder config of release rollouts (Dataset R or Dataset D)."""

    kind: ClassVar[str] = EPISODES_KIND.name
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

    def required_sources(self) -> tuple[tuple[str, ...], ...]:
        """The release files the config cannot be built without: one of each group."""
        return ((self.sources.episodes, self.sources.scaled),) if self.is_dream else ((self.sources.episodes,),)

    def needs(self) -> str:
        """What the config is built from, for the manual download instructions."""
        if self.is_dream:
            return (f"{self.sources.episodes} and/or {self.sources.scaled} (optional, provenance of step 0: "
                    f"{', '.join(self.sources.initial_states)})")
        return self.sources.episodes

    def doc_lines(self) -> list[str]:
        """Its part of docs/schema.md below the heading."""
        return ["Steps:", ""] + field_table(self.step_fields()) + ["", "Episode metadata:", ""] + \
            field_table(self.metadata_fields())

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


QUERIES_KIND = Kind("queries", "dropj.converters.release.preferences:QUERIES",
                    ((LEFT, DATASET_SEQUENCE), (RIGHT, DATASET_SEQUENCE)),
                    "", "preference queries: two clips and the video shown", shown_as=QUERY_VIEW)


@dataclasses.dataclass(frozen=True)
class QuerySpec:
    """The schema of the `queries` config: each query's two clips and its video, as released."""

    config: str
    env: EnvSpec
    queries_file: str  # release path of data.pkl; the videos {i}.mp4 sit beside it
    description: str
    kind: ClassVar[str] = QUERIES_KIND.name

    @property
    def folder(self) -> str:
        return self.queries_file.rsplit("/", 1)[0]

    @property
    def all_sources(self) -> tuple[str, ...]:
        return (self.queries_file,)

    def required_sources(self) -> tuple[tuple[str, ...], ...]:
        return ((self.queries_file,),)

    def needs(self) -> str:
        return f"{self.queries_file} and every video {self.folder}/N.mp4 it names"

    def doc_lines(self) -> list[str]:
        return ["One example per query, in data.pkl order:", ""] + field_table(self.fields())

    def fields(self) -> tuple[Field, ...]:
        return (
            *query_fields(self.env),
            Field(VIDEO, (), "bytes", "mp4", "",
                  "the query's video exactly as released (H.264, 1000x500, 20 frames at 2.5 fps; "
                  "decode with dropj.loaders.video.decode)", "raw"),
        )


SKETCHES_KIND = Kind("sketches", "dropj.converters.release.sketches:CONVERTER", ((STEPS, DATASET_SEQUENCE),),
                     f"{EPISODE_METADATA}/{SKETCH_INDEX}", "ReQueST / DROS sketches as RLDS episodes",
                     content=LABELLED_STEPS)


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
    kind: ClassVar[str] = SKETCHES_KIND.name

    @property
    def all_sources(self) -> tuple[str, ...]:
        return (self.sketches_file, self.times_file) + self.companion_files

    def fields(self) -> tuple[Field, ...]:
        return episode_fields(self.step_fields(), self.metadata_fields())

    def required_sources(self) -> tuple[tuple[str, ...], ...]:
        return ((self.sketches_file,), (self.times_file,))

    def needs(self) -> str:
        companions = f" (optional, kept whole: {', '.join(self.companion_files)})" if self.companion_files else ""
        return f"{self.sketches_file} and {self.times_file}{companions}"

    def doc_lines(self) -> list[str]:
        kept = ", ".join(f"`{name}`" for name in (self.times_file, *self.companion_files))
        return [f"One episode per sketch; {kept} (those present) are kept whole in the dataset's `metadata.json`.", "",
                "Steps:", ""] + field_table(self.step_fields()) + ["", "Episode metadata:", ""] + \
            field_table(self.metadata_fields())

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


PREFERENCES_KIND = Kind("preferences", "dropj.converters.release.preferences:PREFERENCES",
                        ((LEFT, DATASET_SEQUENCE), (RIGHT, DATASET_SEQUENCE), (ANSWERS, SEQUENCE)),
                        RESPONSE_INDEX, "one person's responses to the queries, with labels",
                        ("w_s", "w_def", "just_weights"),
                        content=LABELLED_PAIRS, shown_as=RESPONSE_VIEW)


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
    kind: ClassVar[str] = PREFERENCES_KIND.name

    def required_sources(self) -> tuple[tuple[str, ...], ...]:
        return ((self.queries_file,), (self.responses_file,))

    def needs(self) -> str:
        return f"{self.queries_file} and {self.responses_file}"

    def doc_lines(self) -> list[str]:
        weights = f"w_s={self.w_s}, w_def={self.w_def}" if self.method == "DROPJ" else (
            ", ".join(f"{j}={w}" for j, w in self.just_weights) if self.just_weights else "none")
        return [f"Feedback method: {self.method} (user {self.user_id}); default label weights: {weights}. "
                "One example per response entry:", ""] + field_table(self.fields())

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
