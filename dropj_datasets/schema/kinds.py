"""The registry of kinds of data (`KINDS`): each kind's layout, the converter module that writes it, and
what the tools ask of a kind (its extra last step, what its examples are to the models, how it is shown)."""

from __future__ import annotations

import dataclasses
from typing import Any

from .keys import (
    STEPS,
)


# --- kinds of data ------------------------------------------------------------------------------------

DATASET_SEQUENCE, SEQUENCE = "dataset", "sequence"

# What a config's examples are to the models and tools that read them (`content_of`); each is also what the
# model that trains on it is said to need, so it reads as "the vae model trains on frames".
FRAMES = "frames"  # real episodes: image observations (the VAE, `dropj encode`)
LATENT_STATES = "latent states"  # dream episodes: z|c|h observations (the MDN-RNN, `dropj make-queries`)
LABELLED_PAIRS = "labelled preferences"  # two clips, the answers and a label (the reward model, `dropj evaluate`)
LABELLED_STEPS = "labelled steps"  # sketch steps labelled -1 / 0 / +10 (the sparse reward model)

# How `dropj serve`, `dropj show` and `dropj stats` show an example (`Kind.shown_as`): an episode player and
# its lengths and returns; a query's video; a response's video, answers and label.
EPISODE_VIEW, QUERY_VIEW, RESPONSE_VIEW = "episode", "query", "response"


@dataclasses.dataclass(frozen=True)
class Kind:
    """One kind of data, declared once: its examples' layout and the module that converts it.

    Which fields it has, which release files it needs and how it is described
    are methods of its spec class (`spec_class`), whose `kind` names this entry.
    `converter` is a `module:attribute` holding a `dropj.converters.release.kinds.Converter`:
    legacy files -> examples, examples -> legacy files, verify and summary. A new
    kind is its spec class with its `Kind` beside it (constructing one registers it in `KINDS`), and its
    converter module.

    What the tools ask of a kind is declared here too, never tested by its name:
    `extra_last_step`: each episode ends in a step that only holds s_T (T transitions,
    T + 1 steps; that step's action, reward and discount are padding).
    `content`: what its examples are to the models and tools (`content_of`): one of
    FRAMES, LATENT_STATES, LABELLED_PAIRS, LABELLED_STEPS, or '' for none;
    `dream_content` the same for its dream configs (those whose origin is 'dream').
    `shown_as`: how `dropj serve` / `show` / `stats` show an example (EPISODE_VIEW, ...).
    `store`: for a kind our own tools write, the store that keeps its directory (`dropj repair-recording`
    finds it here).
    """

    name: str
    converter: str
    sequences: tuple[tuple[str, str], ...]  # feature group -> DATASET_SEQUENCE (a tf.data of its items) or SEQUENCE
    index_field: str  # '/'-path of the item's position in its source file ('' when it keeps the file's key order)
    doc: str
    config_parameters: tuple[str, ...] = ()  # spec attributes a builder config may override (label weights)
    extra_last_step: bool = False
    content: str = ""
    dream_content: str = ""
    shown_as: str = EPISODE_VIEW
    store: str = ""  # a kind our tools write: its `store.shards.ShardStore` subclass, as 'module:Class'

    def __post_init__(self):
        if self.name in KINDS:
            raise ValueError(f"kind {self.name!r} is declared twice")
        KINDS[self.name] = self

    @property
    def datasets(self) -> tuple[str, ...]:
        """The groups stored as nested datasets (decoded by batching them whole)."""
        return tuple(group for group, how in self.sequences if how == DATASET_SEQUENCE)

    @property
    def episodic(self) -> bool:
        """Whether its examples are RLDS episodes: a `steps` dataset (with episode metadata beside it)."""
        return STEPS in self.datasets


KINDS: dict[str, Kind] = {}  # name -> Kind: each entry registers itself, beside its spec class (release.py, written.py)


def kind_of(spec: Any) -> Kind:
    """The registry's entry of a spec's kind: what the tools ask of it (`kind_of(spec).extra_last_step`)."""
    return KINDS[spec.kind]


def content_of(spec: Any) -> str:
    """What a config's examples are to the models and tools that read them: FRAMES, LATENT_STATES,
    LABELLED_PAIRS or LABELLED_STEPS; '' when none reads them (queries, a dream recording)."""
    kind = KINDS[spec.kind]
    return kind.dream_content if getattr(spec, "is_dream", False) else kind.content
