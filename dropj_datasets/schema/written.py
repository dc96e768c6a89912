"""The datasets our own tools write rather than build from release files: recordings (`dropj record`),
annotations (`dropj annotate`) and encoded episodes (`dropj encode`), `WRITTEN`, and `spec_for`."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from .keys import (
    ANNOTATION,
    ANNOTATION_DATASET,
    ANSWERED_AT,
    ANSWERS,
    DROPJ_VERSION,
    ENCODED_DATASET,
    ENV_ID,
    ENV_MODE,
    EPISODE_INDEX,
    EPISODE_METADATA,
    FINAL_DONE,
    GYMNASIUM_VERSION,
    INITIAL_STATE,
    KEYS,
    KEYS_HELD,
    LEFT,
    MDNRNN_SHA256,
    PICKLE_PROTOCOL,
    RECORDING_DATASET,
    RESPONSE_INDEX,
    RIGHT,
    SEED,
    SESSION_ID,
    SOURCE_DATASET,
    SOURCE_FILE,
    START_TIME,
    STEPS,
    TIME_LIMIT,
    USER_AGENT,
    USER_ID_TEXT,
    VAE_SHA256,
    WALL_TIME,
)
from .kinds import DATASET_SEQUENCE, FRAMES, LABELLED_PAIRS, LATENT_STATES, RESPONSE_VIEW, SEQUENCE, Kind
from .fields import Field
from .envs import CARRACING, CHUCKC, CHUCKCCAR
from .release import DATASETS, DatasetSpec, FeedbackSpec, SourceFiles, Spec


RECORDINGS_KIND = Kind("recordings", "dropj.converters.release.rollouts:RECORDINGS", ((STEPS, DATASET_SEQUENCE),),
                       f"{EPISODE_METADATA}/{EPISODE_INDEX}", "RLDS episodes recorded with `dropj record`",
                       extra_last_step=True, content=FRAMES,  # its dream configs (`--env dream`): read by no model
                       store="dropj.converters.recording.store:RecordingStore")


@dataclasses.dataclass(frozen=True)
class RecordingSpec(DatasetSpec):
    """A directory written by `dropj record`: Dataset R's steps plus what the recorder saw.

    Steps are those of the release's `real` configs (same observation,
    action, reward, discount, flags and info tri-states, same alignment),
    plus two step-metadata fields. The episode metadata names who drove,
    when, in which environment and with which seed. `sources.episodes` is the
    export name pattern; `{n}` becomes the number of episodes.
    """

    kind: ClassVar[str] = RECORDINGS_KIND.name

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


ANNOTATIONS_KIND = Kind("annotations", "dropj.converters.feedback.annotations:CONVERTER",
                        ((LEFT, DATASET_SEQUENCE), (RIGHT, DATASET_SEQUENCE), (ANSWERS, SEQUENCE)),
                        RESPONSE_INDEX, "preferences collected in the browser with `dropj annotate`",
                        content=LABELLED_PAIRS, shown_as=RESPONSE_VIEW,
                        store="dropj.converters.feedback.annotations:AnnotationStore")


@dataclasses.dataclass(frozen=True)
class AnnotationSpec(FeedbackSpec):
    """A directory written by `dropj annotate`: a preferences config's examples plus who answered, when, how.

    The examples are those of the release's `preferences_*` configs (same
    query clips, answers, times and label rule); `response_index` counts the
    answered queries of the directory in order. `responses_file` is the export
    name pattern: `{user}` and `{n}` become the annotator and their number of
    responses, as in the release's file names.
    """

    kind: ClassVar[str] = ANNOTATIONS_KIND.name

    def needs(self) -> str:
        return "annotation sessions (`dropj.converters.feedback.annotations.Annotations`)"

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
ENCODED_KIND = Kind("encoded", "dropj.converters.derive.latents:CONVERTER", ((STEPS, DATASET_SEQUENCE),),
                    f"{EPISODE_METADATA}/{EPISODE_INDEX}", "real episodes encoded to latent states with `dropj encode`",
                    extra_last_step=True, dream_content=LATENT_STATES,  # its configs are all 'dream' (latent states)
                    store="dropj.converters.derive.latents:EncodedStore")


@dataclasses.dataclass(frozen=True)
class EncodedSpec(DatasetSpec):
    """A directory written by `dropj encode`: real episodes as latent episodes, aligned as the dream configs.

    Step t's observation is ``[z_t | c_t | h_t]`` float32: z_t the VAE mean of frame t, (c_t, h_t) the
    LSTM state after ``[z_0, a_0] … [z_{t-1}, a_{t-1}]`` from zeros. Actions (env units and scaled),
    rewards, discounts and the is_* flags are the source episode's; its info flags are not repeated.
    """

    kind: ClassVar[str] = ENCODED_KIND.name

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
