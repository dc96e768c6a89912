"""The registry of kinds of data (`KINDS`): each kind's layout and the converter module that writes it."""

from __future__ import annotations

import dataclasses

from .keys import (
    ANSWERS,
    EPISODE_INDEX,
    EPISODE_METADATA,
    LEFT,
    RESPONSE_INDEX,
    RIGHT,
    SKETCH_INDEX,
    STEPS,
)


# --- kinds of data ------------------------------------------------------------------------------------

DATASET_SEQUENCE, SEQUENCE = "dataset", "sequence"


@dataclasses.dataclass(frozen=True)
class Kind:
    """One kind of data, declared once: its examples' layout and the module that converts it.

    Which fields it has, which release files it needs and how it is described
    are methods of its spec class (`spec_class`), whose `kind` names this entry.
    `converter` is a `module:attribute` holding a `dropj.converters.release.kinds.Converter`:
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




KINDS: dict[str, Kind] = {kind.name: kind for kind in (
    Kind("episodes", "dropj.converters.release.rollouts:CONVERTER", ((STEPS, DATASET_SEQUENCE),),
         f"{EPISODE_METADATA}/{EPISODE_INDEX}", "RLDS episodes of a release rollout file (Dataset R or D)"),
    Kind("recordings", "dropj.converters.release.rollouts:RECORDINGS", ((STEPS, DATASET_SEQUENCE),),
         f"{EPISODE_METADATA}/{EPISODE_INDEX}", "RLDS episodes recorded with `dropj record`"),
    Kind("sketches", "dropj.converters.release.sketches:CONVERTER", ((STEPS, DATASET_SEQUENCE),),
         f"{EPISODE_METADATA}/{SKETCH_INDEX}", "ReQueST / DROS sketches as RLDS episodes"),
    Kind("queries", "dropj.converters.release.preferences:QUERIES",
         ((LEFT, DATASET_SEQUENCE), (RIGHT, DATASET_SEQUENCE)),
         "", "preference queries: two clips and the video shown"),
    Kind("preferences", "dropj.converters.release.preferences:PREFERENCES",
         ((LEFT, DATASET_SEQUENCE), (RIGHT, DATASET_SEQUENCE), (ANSWERS, SEQUENCE)),
         RESPONSE_INDEX, "one person's responses to the queries, with labels", ("w_s", "w_def", "just_weights")),
    Kind("encoded", "dropj.converters.derive.latents:CONVERTER", ((STEPS, DATASET_SEQUENCE),),
         f"{EPISODE_METADATA}/{EPISODE_INDEX}", "real episodes encoded to latent states with `dropj encode`"),
    Kind("annotations", "dropj.converters.feedback.annotations:CONVERTER",
         ((LEFT, DATASET_SEQUENCE), (RIGHT, DATASET_SEQUENCE), (ANSWERS, SEQUENCE)),
         RESPONSE_INDEX, "preferences collected in the browser with `dropj annotate`"),
)}
