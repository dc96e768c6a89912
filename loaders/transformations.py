"""Pure tf.data transformations of built DROPJ RLDS datasets: ``Dataset -> Dataset``, through `rlds.transformations`.

    import tensorflow_datasets as tfds
    from dropj.loaders import world_model_windows

    episodes = tfds.load('dropj_carracing/dream', split='train', data_dir=D)
    windows = world_model_windows(episodes, 32, action_key='action_scaled')

The step alignment is the writer's (docs/format_decisions.md): an episode of T
transitions is T+1 steps; step t holds (s_t, a_t, r_t) and the last step holds s_T with
padding action and reward. These functions never shift an index to repair it; they only
choose which steps to read. No PyTorch here: `torch_bridge` hands any of them to a
DataLoader.
"""

from __future__ import annotations

import rlds
import tensorflow as tf

from dropj_datasets import schema

WINDOW_OBSERVATION = schema.OBSERVATION
WINDOW_ACTION = schema.ACTION
WINDOW_NEXT_OBSERVATION = schema.NEXT_OBSERVATION

PAIR_LEFT_OBSERVATION = f"{schema.LEFT}_{schema.OBSERVATION}"
PAIR_LEFT_ACTION = f"{schema.LEFT}_{schema.ACTION}"
PAIR_RIGHT_OBSERVATION = f"{schema.RIGHT}_{schema.OBSERVATION}"
PAIR_RIGHT_ACTION = f"{schema.RIGHT}_{schema.ACTION}"
PAIR_LABEL = schema.LABEL
PAIR_WEIGHT = "weight"


def _steps_spec(episodes: tf.data.Dataset, caller: str) -> dict:
    spec = episodes.element_spec
    if not isinstance(spec, dict) or schema.STEPS not in spec:
        raise ValueError(f"{caller} reads RLDS episodes (dicts with '{schema.STEPS}'); got elements {spec}")
    return spec[schema.STEPS].element_spec


def vae_frames(episodes: tf.data.Dataset) -> tf.data.Dataset:
    """Every frame of every episode, in order: (H, W, 3) uint8, one element per step.

    An episode of T transitions gives T+1 frames, s_0 ... s_T: the last step's
    observation is a real frame (the final state), and only its action and reward are
    padding, so it is kept. Episodes with 3 and 1 transitions:

        episodes:  [s0 s1 s2 s3] [u0 u1]        (steps; the last of each is_last)
        vae_frames -> s0, s1, s2, s3, u0, u1     (4 + 2 = 6 frames)
    """
    spec = _steps_spec(episodes, "vae_frames")[schema.OBSERVATION]
    if spec.dtype != tf.uint8 or spec.shape.rank != 3 or spec.shape[-1] != 3:
        raise ValueError(f"vae_frames needs (H, W, 3) uint8 frame observations; "
                         f"got {spec.dtype.name} {spec.shape.as_list()}")
    return episodes.flat_map(
        lambda episode: rlds.transformations.map_steps(
            episode[schema.STEPS], lambda step: step[schema.OBSERVATION], optimization_batch_size=1))


def world_model_windows(episodes: tf.data.Dataset, length: int, *, action_key: str = schema.ACTION,
                        shift: int | None = None) -> tf.data.Dataset:
    """Fixed-length windows of consecutive transitions (s_t, a_t, s_{t+1}) within one episode.

    Each element is ``{'observation': (length, *obs), 'action': (length, 3),
    'next_observation': (length, *obs)}``, where ``next_observation[k] ==
    observation[k + 1]`` for k < length - 1. A window of `length` transitions reads
    length + 1 consecutive steps: observation and action from the first `length`,
    next_observation from the last `length`. Windows start every `shift` transitions
    (default `length`: windows that share only their boundary state). Only steps
    0..T-1 give an action, so the last step's padding action is never read.

    Windows are made per episode (inside ``flat_map``), so none crosses an episode
    boundary, and a window that would run past s_T is dropped: an episode of T
    transitions gives ``(T - length) // shift + 1`` windows if T >= length, else none
    (with the default shift, ``T // length``). With T = 5, length 2:

        steps:      s0/a0  s1/a1  s2/a2  s3/a3  s4/a4  s5/pad
        windows ->  obs [s0 s1], act [a0 a1], next [s1 s2]
                    obs [s2 s3], act [a2 a3], next [s3 s4]     (a4 -> s5 is left out)

    Frames (real configs) and latents (dream) alike; for dream data
    ``action_key='action_scaled'`` reads the actions scaled to [-1, 1].
    """
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    shift = length if shift is None else shift
    if shift < 1:
        raise ValueError(f"shift must be >= 1, got {shift}")
    steps_spec = _steps_spec(episodes, "world_model_windows")
    if action_key not in steps_spec:
        raise ValueError(f"action_key {action_key!r} is not a step field; the steps hold {sorted(steps_spec)}")
    obs_shape = steps_spec[schema.OBSERVATION].shape.as_list()
    act_shape = steps_spec[action_key].shape.as_list()

    def to_window(steps: dict) -> dict:
        observation = tf.ensure_shape(steps[schema.OBSERVATION], [length + 1] + obs_shape)
        action = tf.ensure_shape(steps[action_key], [length + 1] + act_shape)
        return {WINDOW_OBSERVATION: observation[:-1],
                WINDOW_ACTION: action[:-1],
                WINDOW_NEXT_OBSERVATION: observation[1:]}

    def episode_windows(episode: dict) -> tf.data.Dataset:
        steps = episode[schema.STEPS].map(
            lambda step: {schema.OBSERVATION: step[schema.OBSERVATION], action_key: step[action_key]})
        batched = rlds.transformations.batch(steps, size=length + 1, shift=shift, drop_remainder=True)
        return batched.map(to_window)

    return episodes.flat_map(episode_windows)


def preference_pairs(examples: tf.data.Dataset, *, labelled_only: bool = True) -> tf.data.Dataset:
    """Preference examples as flat pairs of clips with their label and a loss weight.

    Each element is ``{'left_observation': (20, D), 'left_action': (20, 3),
    'right_observation', 'right_action', 'label': (), 'weight': ()}`` in the dataset's
    dtypes (float64 for the release). `label` is P(left preferred). Skipped queries
    carry no label (``has_label`` false, label NaN): with ``labelled_only`` (default)
    they are dropped; without it they are kept with label 0.0 and weight 0.0, so a
    weighted loss ignores them while batches keep their size. Labelled examples have
    weight 1.0.

        examples:  q0 label 1.0 | q1 skipped (NaN) | q2 label 0.5
        preference_pairs(examples)                       -> q0 (1.0, w 1), q2 (0.5, w 1)
        preference_pairs(examples, labelled_only=False)  -> q0 (1.0, w 1), q1 (0.0, w 0), q2 (0.5, w 1)
    """
    spec = examples.element_spec
    missing = [k for k in (schema.LEFT, schema.RIGHT, schema.LABEL, schema.HAS_LABEL)
               if not isinstance(spec, dict) or k not in spec]
    if missing:
        raise ValueError(f"preference_pairs reads preference examples; missing fields {missing}")

    def clip(segment: tf.data.Dataset, field: str) -> tf.Tensor:
        # The clip is a nested dataset of SEGMENT_STEPS steps: one batch holds it all; a
        # clip of another length fails here rather than being cut or padded.
        values = segment.map(lambda step: step[field]).batch(schema.SEGMENT_STEPS).get_single_element()
        return tf.ensure_shape(values, [schema.SEGMENT_STEPS] + segment.element_spec[field].shape.as_list())

    def to_pair(example: dict) -> dict:
        has_label = example[schema.HAS_LABEL]
        label = example[schema.LABEL]
        return {PAIR_LEFT_OBSERVATION: clip(example[schema.LEFT], schema.OBSERVATION),
                PAIR_LEFT_ACTION: clip(example[schema.LEFT], schema.ACTION),
                PAIR_RIGHT_OBSERVATION: clip(example[schema.RIGHT], schema.OBSERVATION),
                PAIR_RIGHT_ACTION: clip(example[schema.RIGHT], schema.ACTION),
                PAIR_LABEL: tf.where(has_label, label, tf.zeros_like(label)),
                PAIR_WEIGHT: tf.cast(has_label, label.dtype)}

    if labelled_only:
        examples = examples.filter(lambda example: example[schema.HAS_LABEL])
    return examples.map(to_pair)


def labelled_steps(sketches: tf.data.Dataset) -> tf.data.Dataset:
    """Every labelled step of ReQueST / DROS sketches: ``{'observation', 'action', 'reward'}``, one per element.

    A sketch holds only the steps the person labelled (-1, 0 or +10), each with its own state and
    action; there is no padding step, so every step is kept. Two sketches of 2 and 1 steps:

        sketches:        [(s0, a0, -1) (s1, a1, 0)] [(u0, b0, 10)]
        labelled_steps -> (s0, a0, -1), (s1, a1, 0), (u0, b0, 10)
    """
    spec = _steps_spec(sketches, "labelled_steps")
    missing = [k for k in (schema.OBSERVATION, schema.ACTION, schema.REWARD) if k not in spec]
    if missing or schema.NEXT_OBSERVATION not in spec:
        raise ValueError("labelled_steps reads ReQueST / DROS sketches; "
                         f"missing fields {missing or ['next_observation']}")
    return sketches.flat_map(lambda sketch: sketch[schema.STEPS].map(
        lambda step: {schema.OBSERVATION: step[schema.OBSERVATION], schema.ACTION: step[schema.ACTION],
                      schema.REWARD: step[schema.REWARD]}))
