"""Any gymnasium environment recorded into RLDS: `GymRecorder`, a wrapper, and `GymStore`, its shard store.

    env = GymRecorder(gym.make("CartPole-v1"), "runs", name="cartpole", metadata={"policy": "random"})

writes `runs/cartpole/1.0.0/` in TFDS's layout (`tfds.builder_from_directory` loads it), one closed shard per
episode, with the shard store's guarantees (`store/shards.py`): one writer per directory, nothing overwritten
or half-listed, append, rescue files. Capture is the wrapper's, storage the store's.

The features come from the spaces, not from our schema, so a directory says what it holds in a small
description of them (`describe`: JSON in metadata.json), from which the features are made again; an
existing directory is appended to only when its description is the wrapped environment's and its features.json
is exactly what that description gives, so no feature class named on disk is ever trusted (docs/security.md).

Where each value goes (RLDS's alignment, as EnvLogger's `rlds_utils.to_rlds_step` has it): step t holds the
observation o_t, the action a_t taken on it, the reward r_t that action earned, `discount` (0.0 when that action
ended the episode by `terminated`, else 1.0), and the `info` gymnasium returned with o_t (reset's for step 0).
The last step holds the last observation; its action is the space's zero value, its reward 0.0 and discount 1.0
(RLDS's filler, never read). `terminated` and `truncated` are kept apart as gymnasium gave them with o_t, and
`is_terminal` is `terminated` on the last step. Floats are stored as their raw bytes, so every bit (NaN payloads
included) comes back.

An episode is written when the next `reset` or `close` comes (so `discard_episode()` may still drop it after it
ended); a killed process loses only that open episode. An episode abandoned by a `reset` before it ended is
written too, its last step neither terminated nor truncated.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import math
import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from dropj.converters.store import dataset_dir
from dropj.converters.store.shards import DATASET_INFO, RecordingError, ShardStore, repair_command
from dropj_datasets import codec, schema

VERSION = "1.0.0"
FORMAT = "dropj-gym-recording/1"  # the description's format, in metadata.json
# Keys of our own beside RLDS's (schema's): what a gymnasium step has that RLDS's does not.
TERMINATED, TRUNCATED, INFO_PRESENT = "terminated", "truncated", "info_present"
RESET_SEED, RESET_OPTIONS, ENV_SPEC, USER_METADATA = "reset_seed", "reset_options", "env_spec", "metadata"
STARTED, ENDED = "started", "ended"
DESCRIPTION = "gym_recorder"  # metadata.json's key of the description

DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
          "float16", "float32", "float64")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")  # a Dict key or info key: a TFDS feature name
_DATASET_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")  # TFDS's dataset names: snake_case
_MAX_DEPTH, _MAX_NODES, _MAX_ELEMENTS = 8, 256, 1 << 26
SUPPORTED = "Box, Discrete, MultiDiscrete, MultiBinary, and Dict or Tuple of these"


# -- the description: spaces -> JSON -> features --------------------------------------------------------
def describe(space: spaces.Space, where: str = "observation") -> dict:
    """The JSON description of a space (what the features are made from); ValueError, one line naming the
    space, for one that cannot be recorded."""
    def refuse(why: str) -> ValueError:
        return ValueError(f"GymRecorder: cannot record the {where} space, {space!r}: {why}")

    if isinstance(space, spaces.Dict):
        bad = [k for k in space.spaces if not isinstance(k, str) or not _NAME.match(k)]
        if bad:
            raise refuse(f"its keys {bad!r} are not names (letters, digits, underscores)")
        return {"type": "dict", "items": {k: describe(s, f"{where}[{k!r}]") for k, s in space.spaces.items()}}
    if isinstance(space, spaces.Tuple):
        return {"type": "tuple", "items": [describe(s, f"{where}[{i}]") for i, s in enumerate(space.spaces)]}
    if isinstance(space, spaces.Discrete):
        return {"type": "discrete", "dtype": "int64", "shape": []}
    if isinstance(space, (spaces.Box, spaces.MultiDiscrete, spaces.MultiBinary)):
        dtype = np.dtype(space.dtype).name
        if dtype not in DTYPES:
            raise refuse(f"its dtype {dtype} is not one of {', '.join(DTYPES)}")
        shape = [int(n) for n in space.shape]
        image = isinstance(space, spaces.Box) and dtype == "uint8" and len(shape) == 3 and shape[2] == 3
        kind = {spaces.Box: "box", spaces.MultiDiscrete: "multi_discrete", spaces.MultiBinary: "multi_binary"}
        return {"type": "image" if image else kind[type(space)] if type(space) in kind else "box",
                "dtype": dtype, "shape": shape}
    raise refuse(f"supported are {SUPPORTED}")


def check_description(value: Any, where: str, depth: int = 0, count: Optional[list] = None) -> dict:
    """A description read from disk (untrusted), checked whole: known types, dtypes and names only, bounded
    shapes and nesting; returns it, else a DataError naming `where`."""
    count = [0] if count is None else count
    count[0] += 1
    if depth > _MAX_DEPTH or count[0] > _MAX_NODES:
        raise schema.DataError(f"{where}: nested deeper than {_MAX_DEPTH} or more than {_MAX_NODES} spaces")
    if not isinstance(value, dict):
        raise schema.DataError(f"{where}: not a space description ({schema.describe(value)})")
    kind = value.get("type")
    if kind == "dict" and set(value) == {"type", "items"} and isinstance(value["items"], dict):
        for key, item in value["items"].items():
            if not _NAME.match(key):
                raise schema.DataError(f"{where}: {schema.describe(key)} is not a name")
            check_description(item, f"{where}.{key}", depth + 1, count)
        return value
    if kind == "tuple" and set(value) == {"type", "items"} and isinstance(value["items"], list):
        for i, item in enumerate(value["items"]):
            check_description(item, f"{where}[{i}]", depth + 1, count)
        return value
    shape = value.get("shape")
    if kind in ("discrete", "image", "box", "multi_discrete", "multi_binary") and \
            set(value) == {"type", "dtype", "shape"} and value.get("dtype") in DTYPES and \
            isinstance(shape, list) and len(shape) <= 8 and \
            all(type(n) is int and 0 <= n <= _MAX_ELEMENTS for n in shape) and math.prod(shape) <= _MAX_ELEMENTS:
        return value
    raise schema.DataError(f"{where}: not a space description ({schema.describe(value, 200)})")


def _feature(desc: dict, doc: str = "") -> Any:
    import tensorflow_datasets as tfds

    if desc["type"] == "dict":
        return tfds.features.FeaturesDict({k: _feature(v) for k, v in desc["items"].items()})
    if desc["type"] == "tuple":  # TFDS has no tuple feature: items by position, "0", "1", ...
        return tfds.features.FeaturesDict({str(i): _feature(v) for i, v in enumerate(desc["items"])})
    if desc["type"] == "image":
        return codec.PNG.feature(tuple(desc["shape"]), doc)
    dtype = np.dtype(desc["dtype"])
    # tf.train.Example narrows float64 to float32 and has no unsigned 64-bit list: raw bytes keep every bit
    encoding = tfds.features.Encoding.NONE if dtype == np.bool_ else tfds.features.Encoding.BYTES
    return tfds.features.Tensor(shape=tuple(desc["shape"]), dtype=dtype, encoding=encoding, doc=doc)


def make_features(description: dict) -> Any:
    """The TFDS features of a recording with this (checked) description."""
    import tensorflow_datasets as tfds

    def scalar(dtype: Any, doc: str) -> Any:
        return tfds.features.Tensor(shape=(), dtype=dtype, doc=doc)

    def raw(dtype: Any, doc: str) -> Any:
        return tfds.features.Tensor(shape=(), dtype=dtype, encoding=tfds.features.Encoding.BYTES, doc=doc)

    info = description["info"]
    steps = {
        schema.OBSERVATION: _feature(description["observation"], "o_t, as the environment returned it"),
        schema.ACTION: _feature(description["action"], "a_t, taken on o_t (the zero value on the last step)"),
        schema.REWARD: raw(np.float64, "r_t, earned by a_t (0.0 on the last step)"),
        schema.DISCOUNT: raw(np.float64, "0.0 when a_t ended the episode by `terminated`, else 1.0"),
        schema.IS_FIRST: scalar(np.bool_, "the reset's observation"),
        schema.IS_LAST: scalar(np.bool_, "the episode's last observation"),
        schema.IS_TERMINAL: scalar(np.bool_, "the last observation, ended by `terminated`"),
        TERMINATED: scalar(np.bool_, "gymnasium's `terminated`, returned with o_t"),
        TRUNCATED: scalar(np.bool_, "gymnasium's `truncated`, returned with o_t"),
        schema.WALL_TIME: raw(np.float64, "seconds since the epoch when o_t was returned"),
    }
    if info:
        steps[schema.INFO] = tfds.features.FeaturesDict({k: _feature(v) for k, v in info.items()})
        steps[INFO_PRESENT] = tfds.features.FeaturesDict(
            {k: scalar(np.bool_, f"whether info held {k} with o_t") for k in info})
    text = tfds.features.Text
    return tfds.features.FeaturesDict({
        schema.STEPS: tfds.features.Dataset(steps),
        schema.EPISODE_METADATA: tfds.features.FeaturesDict({
            schema.EPISODE_INDEX: scalar(np.int64, "the episode's number in the directory"),
            RESET_SEED: text(doc="the seed reset was given, JSON (null when none)"),
            RESET_OPTIONS: text(doc="the options reset was given, JSON"),
            ENV_SPEC: text(doc="the environment: id, kwargs, gymnasium's and its package's versions, JSON"),
            USER_METADATA: text(doc="the caller's metadata, JSON"),
            STARTED: raw(np.float64, "seconds since the epoch at reset"),
            ENDED: raw(np.float64, "seconds since the epoch when the episode was written"),
        }),
    })


def _zero(desc: dict) -> Any:
    if desc["type"] == "dict":
        return {k: _zero(v) for k, v in desc["items"].items()}
    if desc["type"] == "tuple":
        return {str(i): _zero(v) for i, v in enumerate(desc["items"])}
    return np.zeros(desc["shape"], desc["dtype"])


def _value(desc: dict, value: Any, where: str) -> Any:
    """A value of the environment as the features take it (Tuple items by position); ValueError, one line,
    when it does not fit its space's description."""
    if desc["type"] in ("dict", "tuple"):
        keys = list(desc["items"]) if desc["type"] == "dict" else range(len(desc["items"]))
        items = desc["items"] if desc["type"] == "dict" else dict(enumerate(desc["items"]))
        try:
            return {str(k): _value(items[k], value[k], f"{where}[{k!r}]") for k in keys}
        except (KeyError, IndexError, TypeError):
            raise ValueError(f"GymRecorder: {where} is not a {desc['type']} of {list(keys)}") from None
    array = np.asarray(value)
    if list(array.shape) != desc["shape"] or not np.can_cast(array.dtype, desc["dtype"], "same_kind"):
        raise ValueError(f"GymRecorder: {where} is {array.dtype}{list(array.shape)}, its space "
                         f"{desc['dtype']}{desc['shape']}")
    return array.astype(desc["dtype"], copy=False)


def _stack(values: list) -> Any:
    if isinstance(values[0], dict):
        return {k: _stack([v[k] for v in values]) for k in values[0]}
    return np.stack(values)


def _encode_frames(desc: dict, column: Any, encode: Callable[[np.ndarray], list[bytes]]) -> Any:
    if desc["type"] in ("dict", "tuple"):
        items = desc["items"] if desc["type"] == "dict" else {str(i): v for i, v in enumerate(desc["items"])}
        return {k: _encode_frames(v, column[k], encode) for k, v in items.items()}
    return encode(column) if desc["type"] == "image" else column


def _has_images(desc: dict) -> bool:
    if desc["type"] in ("dict", "tuple"):
        items = desc["items"].values() if desc["type"] == "dict" else desc["items"]
        return any(_has_images(v) for v in items)
    return desc["type"] == "image"


def env_spec(env: gym.Env) -> dict:
    """The environment as JSON: its id and kwargs (values JSON cannot hold as their repr), and the versions of
    gymnasium and of the package its class comes from."""
    spec = env.spec
    module = (spec.entry_point if spec and isinstance(spec.entry_point, str) else type(env.unwrapped).__module__)
    package = module.split(":")[0].split(".")[0]
    try:
        distribution = importlib.metadata.packages_distributions().get(package, [package])[0]
        package_version = importlib.metadata.version(distribution)
    except (importlib.metadata.PackageNotFoundError, IndexError):
        package_version = None
    return {"id": spec.id if spec else None, "kwargs": dict(spec.kwargs) if spec else {},
            "entry_point": module, "gymnasium": gym.__version__, "package": package,
            "package_version": package_version}


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=repr)


# -- the store ------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class GymSpec:
    """What the shard store asks of a spec: a config (none: the layout is NAME/VERSION) and a description."""

    config: Optional[str] = None
    description: str = "Episodes of a gymnasium environment recorded by dropj's GymRecorder"


def read_description(directory: Path) -> Optional[dict]:
    """The checked description of a directory GymRecorder wrote, None when it holds none yet (no
    metadata.json); a RecordingError naming the file when it is not one, or its features.json is not
    exactly what the description gives."""
    metadata = directory / dataset_dir.METADATA
    if not metadata.exists():
        return None
    try:
        value = dataset_dir.read_json(metadata, dataset_dir.JSON_LIMITS[dataset_dir.METADATA])
        desc = value.get(DESCRIPTION) if isinstance(value, dict) else None
        if not isinstance(desc, dict) or desc.get("format") != FORMAT or \
                set(desc) != {"format", "observation", "action", "info"} or not isinstance(desc["info"], dict):
            raise schema.DataError(f"{metadata}: not a GymRecorder recording (no {DESCRIPTION} of format {FORMAT})")
        check_description(desc["observation"], f"{metadata}: observation")
        check_description(desc["action"], f"{metadata}: action")
        for key, item in desc["info"].items():
            if not _NAME.match(key):
                raise schema.DataError(f"{metadata}: info key {schema.describe(key)} is not a name")
            check_description(item, f"{metadata}: info.{key}")
        features_file = directory / dataset_dir.FEATURES
        on_disk = dataset_dir.read_json(features_file, dataset_dir.JSON_LIMITS[dataset_dir.FEATURES])
    except (schema.DataError, OSError) as exc:
        raise RecordingError(schema.one_line(exc, typed=False)) from None
    from google.protobuf import json_format

    if on_disk != json_format.MessageToDict(make_features(desc).to_proto()):
        raise RecordingError(f"{features_file}: not the features its {dataset_dir.METADATA} describes; refusing to "
                             "read or append to it")
    return desc


class GymStore(ShardStore):
    """A GymRecorder directory, OUT/NAME/VERSION: the shard store with features from a description (`describe`)
    rather than from our schema. `description` None: the directory's own (read and checked), or not known
    until the first episode is written (`describe_info`)."""

    VERSION = VERSION
    ITEM = "episode"
    WRITER, ONE = "recording", "recorder"
    INDEX_FIELD = (schema.EPISODE_METADATA, schema.EPISODE_INDEX)

    def __init__(self, directory: Path, name: str, description: Optional[dict] = None, **kwargs: Any):
        self.DATASET = name  # a store per directory: not one dataset name for the class (nor a STORES entry)
        self.description = description
        super().__init__(directory, GymSpec(), **kwargs)

    def _clear_leftovers(self) -> None:  # the lock is held from here on: read the directory's description
        super()._clear_leftovers()
        stored = read_description(self.directory)
        if stored is not None and self.description is not None and \
                {k: stored[k] for k in ("observation", "action")} != \
                {k: self.description[k] for k in ("observation", "action")}:
            raise RecordingError(f"{self.directory}: holds a recording of other spaces ({_json(stored)[:300]}); "
                                 "choose another name or folder")
        if stored is not None:
            self.description = stored

    @property
    def described(self) -> bool:
        return self.description is not None and self.description.get("info") is not None

    def _make_features(self) -> Any:
        return make_features(self.description)

    def _write_info(self) -> None:
        if self.described:  # nothing to say before the first episode fixes the info's dtypes
            super()._write_info()

    def _make_info(self, identity: Any) -> Any:
        import tensorflow_datasets as tfds

        return tfds.core.DatasetInfo(
            builder=identity, description=self.spec.description + ".", features=self.features,
            disable_shuffling=True, metadata=tfds.core.MetadataDict({DESCRIPTION: self.description}))


# -- the wrapper ----------------------------------------------------------------------------------------
class GymRecorder(gym.Wrapper):
    """Records every episode of `env` into `data_dir/name/1.0.0/` (see the module's docstring).

    `metadata`: JSON-able, stored with every episode (a value JSON cannot hold, as its repr). `log`: where the
    recorder's notes go (None: nowhere). `info_keys`: the info entries to store, each when
    present, its dtype and shape fixed by the first episode that has it before the first episode is written
    (a key absent from that episode is not recorded, and `log` says so). Refuses, in one line, a space it
    cannot record and a directory another recorder holds or that holds other spaces.
    """

    def __init__(self, env: gym.Env, data_dir: str | os.PathLike, name: str, *, metadata: Optional[dict] = None,
                 info_keys: Sequence[str] = (), log: Optional[Callable[[str], None]] = print):
        super().__init__(env)
        log = log or (lambda line: None)
        if not isinstance(name, str) or not _DATASET_NAME.match(name):
            raise ValueError(f"GymRecorder: name {name!r} is not a dataset name (lowercase letters, digits, "
                             "underscores, a letter first)")
        bad = [k for k in info_keys if not isinstance(k, str) or not _NAME.match(k)]
        if bad:
            raise ValueError(f"GymRecorder: info keys {bad!r} are not names (letters, digits, underscores)")
        description = {"format": FORMAT, "observation": describe(env.observation_space, "observation"),
                       "action": describe(env.action_space, "action"), "info": None}
        self._metadata = _json(metadata or {})
        self._spec = _json(env_spec(env))
        self._info_keys = tuple(info_keys)
        self.log = log
        self.store = GymStore(Path(data_dir) / name / VERSION, name, description, log=log)
        self.directory = self.store.directory
        self._frames = None
        self._steps: list[dict] = []
        self._reset_args = (None, None)
        self._started = 0.0
        self.rescued: list[str] = []

    @property
    def episodes(self) -> int:
        """Episodes listed in the directory."""
        return self.store.count

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        self._write_episode()
        obs, info = self.env.reset(seed=seed, options=options)
        self._reset_args = (seed, options)
        self._started = time.time()
        self._steps = [self._step(obs, info, False, False)]
        return obs, info

    def step(self, action: Any):
        if not self._steps:
            raise RuntimeError("GymRecorder: step before reset")
        obs, reward, terminated, truncated, info = self.env.step(action)
        previous = self._steps[-1]
        previous[schema.ACTION] = _value(self.store.description["action"], action, "the action")
        previous[schema.REWARD] = float(reward)
        previous[schema.DISCOUNT] = 0.0 if terminated else 1.0
        self._steps.append(self._step(obs, info, bool(terminated), bool(truncated)))
        return obs, reward, terminated, truncated, info

    def _step(self, obs: Any, info: dict, terminated: bool, truncated: bool) -> dict:
        return {schema.OBSERVATION: _value(self.store.description["observation"], obs, "the observation"),
                TERMINATED: terminated, TRUNCATED: truncated, schema.WALL_TIME: time.time(),
                schema.INFO: {k: np.array(info[k]) for k in self._info_keys if k in info}}

    def discard_episode(self) -> int:
        """Drops the episode being recorded (ended or not, until the next reset writes it); returns its steps."""
        dropped = len(self._steps)
        self._steps = []
        return dropped

    def close(self) -> None:
        try:
            self._write_episode()
        finally:
            if self._frames is not None:
                self._frames.close()
                self._frames = None
            self.store.close()
            super().close()

    # -- writing ----------------------------------------------------------------------------------------
    def _fix_info(self, steps: list[dict]) -> None:
        """The first episode written fixes each info key's dtype and shape (the first value it has)."""
        info: dict = {}
        for key in self._info_keys:
            first = next((s[schema.INFO][key] for s in steps if key in s[schema.INFO]), None)
            if first is None:
                self.log(f"GymRecorder: info key {key!r} was not in the first episode; it is not recorded")
                continue
            try:
                info[key] = describe(spaces.Box(-np.inf, np.inf, first.shape, first.dtype), f"info[{key!r}]")
            except (ValueError, TypeError) as exc:
                raise ValueError(f"GymRecorder: info[{key!r}] is {first.dtype}{list(first.shape)}, which cannot "
                                 f"be recorded ({exc})") from None
            if info[key]["type"] == "image":  # an info array is stored as it is, never as a frame
                info[key]["type"] = "box"
        self.store.description = {**self.store.description, "info": info}

    def _example(self, steps: list[dict]) -> dict:
        desc = self.store.description
        info = desc["info"]
        last = steps[-1]
        last[schema.ACTION], last[schema.REWARD], last[schema.DISCOUNT] = _zero(desc["action"]), 0.0, 1.0
        columns = {key: _stack([s[key] for s in steps]) for key in
                   (schema.OBSERVATION, schema.ACTION, TERMINATED, TRUNCATED)}
        columns[schema.REWARD] = np.array([s[schema.REWARD] for s in steps], np.float64)
        columns[schema.DISCOUNT] = np.array([s[schema.DISCOUNT] for s in steps], np.float64)
        columns[schema.WALL_TIME] = np.array([s[schema.WALL_TIME] for s in steps], np.float64)
        count = len(steps)
        columns[schema.IS_FIRST] = np.arange(count) == 0
        columns[schema.IS_LAST] = np.arange(count) == count - 1
        columns[schema.IS_TERMINAL] = columns[schema.IS_LAST] & columns[TERMINATED]
        if info:
            columns[schema.INFO], columns[INFO_PRESENT] = self._info_columns(steps, info)
        if _has_images(desc["observation"]) or _has_images(desc["action"]):
            if self._frames is None:
                self._frames = codec.PNG.pool()
            for key in (schema.OBSERVATION, schema.ACTION):
                columns[key] = _encode_frames(desc[key], columns[key], self._frames.encode_all)
        seed, options = self._reset_args
        meta = {schema.EPISODE_INDEX: self.store.count, RESET_SEED: _json(seed), RESET_OPTIONS: _json(options),
                ENV_SPEC: self._spec, USER_METADATA: self._metadata, STARTED: np.float64(self._started),
                ENDED: np.float64(time.time())}
        return {schema.STEPS: columns, schema.EPISODE_METADATA: meta}

    def _info_columns(self, steps: list[dict], info: dict) -> tuple[dict, dict]:
        """The info keys' values and whether each step had them. A value that does not fit the dtype and shape
        the first episode fixed is left out (its step says not present), and `log` says so: the episode is
        still written."""
        values, present = {}, {}
        for key, desc in info.items():
            column, flags = [], []
            for t, step in enumerate(steps):
                value = None
                if key in step[schema.INFO]:
                    try:
                        value = _value(desc, step[schema.INFO][key], f"info[{key!r}]")
                    except ValueError as exc:
                        self.log(f"{exc} at step {t}; not recorded")
                column.append(_zero(desc) if value is None else value)
                flags.append(value is not None)
            values[key], present[key] = _stack(column), np.array(flags)
        return values, present

    def _write_episode(self) -> None:
        steps, self._steps = self._steps, []
        if len(steps) < 2:  # nothing was done after the reset: nothing to learn from
            return
        if not self.store.described:
            self._fix_info(steps)
        example = self._example(steps)
        try:
            self.store.append(example, index_field=GymStore.INDEX_FIELD)
        except Exception as exc:  # noqa: BLE001 - whatever failed, the episode is kept (the store never doubles it)
            why = schema.one_line(exc, typed=not isinstance(exc, RecordingError))
            index = example[schema.EPISODE_METADATA][schema.EPISODE_INDEX]
            path = self.store.rescue(example, index, "gym")
            self.rescued.append(str(path))
            self.log(f"episode {index} could not be written into {self.directory} ({why}); it is kept in {path}: "
                     f"run `{repair_command(self.directory, path)}` to add it")


def rebuild(directory: str | os.PathLike, log: Callable[[str], None] = print) -> str:
    """The list of a GymRecorder directory rebuilt from its shards (what `dropj repair-recording` does for our
    other stores; shards that do not read whole are moved to damaged/). Rescue files are not added back here."""
    directory = Path(directory)
    if not directory.is_dir():
        raise RecordingError(f"{directory}: no such directory")
    store = GymStore(directory, directory.parent.name, None, holder="GymRecorder rebuild", log=log, repairing=True)
    try:
        return f"{directory}: {store.count} episodes listed in {DATASET_INFO}"
    finally:
        store.close()
