"""A built dataset directory is untrusted input too: checked before TensorFlow Datasets reads it.

Someone may share a built dataset. TFDS trusts its JSON: `features.json`
names the Python class of every feature and TFDS imports that module;
`dataset_info.json` names the shard files. So before TFDS opens a directory
(`check`), this module verifies that

* the directory is a version folder (`.../name/config/1.0.0`) of a DROPJ
  dataset: `dataset_info.json` names a dataset and config of the schema, or
  a recording;
* `features.json` is exactly the features that config is built with
  (descriptions aside): no other class can be named, and no shape changed;
* `dataset_info.json` uses TFDS's own shard-file naming, in TFRecord, and
  every shard it lists is a regular file in the directory;
* each JSON file is a regular file of bounded size (`JSON_LIMITS`), UTF-8, nested at most
  `MAX_JSON_DEPTH` deep, without a key twice (TFDS's own parser refuses one; a reader keeping the
  last would see another file than TFDS), and `dataset_info.json` is a `DatasetInfo` as TFDS parses
  it: no value TFDS would fail on later (an integer past int64, a list for a string) gets past here;
* every shard count fits its shard (a record takes at least `tfrecord_wire`'s 16 bytes of framing).

`check_shards` also gives the shard files and their counts (the JSON read once, as checked), and
`max_steps` the steps an episode of a built dataset may have: the reader's cap, raised by the same
variable as the pickle reader's (`files.MAX_STEPS_VARIABLE`).

`metadata_*` helpers check the values `dropj export` takes from
`metadata.json` (file names, protocols, arrays) against the schema.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, BinaryIO, Optional

from dropj.converters.store.files import MAX_STEPS_VARIABLE, max_episode_steps, open_regular  # noqa: F401
from dropj_datasets import schema
from dropj_datasets.schema import DataError

DATASET_INFO = "dataset_info.json"
FEATURES = "features.json"
METADATA = "metadata.json"
JSON_LIMITS = {DATASET_INFO: 16 << 20, FEATURES: 4 << 20, METADATA: 64 << 20}
SHARD_TEMPLATE = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"  # `tfds build`
SHARD_INDEX_TEMPLATE = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_INDEX}"  # TFDS's SequentialWriter (`dropj record`)
MAX_JSON_DEPTH = 64  # TFDS's files nest 12 deep at most (features.json of a nested sequence)
MAX_SHARDS = 100_000
RECORD_FRAMING = 16  # bytes around every TFRecord record: length, its CRC, the data's CRC


def shard_name(dataset: str, template: str, index: int, count: int) -> str:
    """A shard's file name under one of TFDS's two templates."""
    if template == SHARD_INDEX_TEMPLATE:
        return f"{dataset}-train.tfrecord-{index:05d}"
    return f"{dataset}-train.tfrecord-{index:05d}-of-{count:05d}"
_VERSION = re.compile(r"^\d+\.\d+\.\d+$")


def max_steps() -> int:
    """The steps (T+1 for T transitions) an episode of a built dataset may have: the pickle reader's cap
    on transitions (the environment's time limit, or `$DROPJ_MAX_EPISODE_STEPS`) and the last step."""
    return max_episode_steps() + 1


def open_shard(path: Path) -> BinaryIO:
    """A shard file, opened unbuffered for `pread`: a regular file, else one `DataError` naming it (a FIFO
    swapped in after the check is refused, never waited on)."""
    return open_regular(path, "shard").detach()


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        twice = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise ValueError(f"the key {twice[:40]!r} appears twice")
    return found


def _depth_beyond(value: Any, limit: int) -> bool:
    """Whether a parsed JSON value nests deeper than `limit` (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return False


def read_json(path: Path, limit: int) -> Any:
    """A JSON file of at most `limit` bytes, read from a regular file: UTF-8, no key twice, nested at
    most `MAX_JSON_DEPTH` deep, else one `DataError` naming it."""
    with open_regular(path, "JSON file") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise DataError(f"{path}: larger than {limit:,} bytes; not a file TFDS wrote")
    try:
        value = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 (byte {exc.start}); not a file TFDS wrote") from None
    except (ValueError, RecursionError) as exc:  # RecursionError: nested deeper than the parser recurses
        raise DataError(f"{path}: not valid JSON ({str(exc)[:100]})") from None
    if _depth_beyond(value, MAX_JSON_DEPTH):
        raise DataError(f"{path}: nested deeper than {MAX_JSON_DEPTH} levels; not a file TFDS wrote")
    return value


def expected_features(dataset: str, spec: schema.Spec) -> dict:
    """The features.json content TFDS writes for a config, as a dict."""
    from google.protobuf import json_format

    from dropj_datasets import features as features_lib

    if dataset == schema.RECORDING_DATASET:
        features = features_lib.recording_features(spec)
    else:
        features = features_lib.features(spec)
    return json_format.MessageToDict(features.to_proto())


def describe_layout(path: Path) -> Optional[str]:
    """A hint when `path` is a dataset or config folder rather than a version folder."""
    if not path.is_dir() or (path / DATASET_INFO).exists():
        return None
    versions = sorted(p.name for p in path.iterdir() if p.is_dir() and _VERSION.match(p.name))
    if versions:
        return f"{path} is a config folder: pass its version folder, e.g. {path / versions[-1]}"
    configs = sorted(p.name for p in path.iterdir() if p.is_dir() and any(
        _VERSION.match(v.name) for v in p.iterdir() if v.is_dir()))
    if configs:
        return (f"{path} is a dataset folder: pass a version folder, e.g. {path / configs[0]}/<version>, or use "
                f"NAME/CONFIG with --data_dir (configs here: {', '.join(configs[:8])})")
    return None


_NAME = re.compile(r"^(?P<name>[A-Za-z0-9_]+)(?:/(?P<config>[A-Za-z0-9_]+))?(?::(?P<version>[^/]*))?$")

# The datasets our tools write rather than build, and the command that writes each (a hint names it).
WRITTEN_BY = {schema.RECORDING_DATASET: "dropj record --out {root}", schema.ANNOTATION_DATASET: "dropj annotate "
              "--out {root}", schema.ENCODED_DATASET: "dropj encode --dataset NAME/CONFIG --out {root}"}


def known_names() -> list[str]:
    """Every NAME/CONFIG of the schema: the release's configs, then what our tools write."""
    return [f"{d}/{c}" for d, configs in {**schema.DATASETS, **schema.WRITTEN}.items() for c in configs]


def parse_name(text: str) -> tuple[str, str, Optional[str]]:
    """'NAME/CONFIG[:VERSION]', TFDS's naming (`tfds.load('dropj_carracing/real:1.1.0')`), checked against the
    schema: (name, config, version or None). NAME alone is its default config, as `tfds.load` takes it (the
    first; the datasets our tools write have none). A name or config that does not exist is one error, with
    the closest that does."""
    import difflib

    match = _NAME.match(text)
    if match is None:
        raise DataError(f"{text!r}: expected NAME/CONFIG or NAME/CONFIG:VERSION, e.g. dropj_carracing/real:1.1.0")
    name, config, version = match["name"], match["config"], match["version"]
    if version is not None and not _VERSION.match(version):
        raise DataError(f"{text!r}: a version is three numbers, e.g. {name}/{config or 'CONFIG'}:1.1.0")
    datasets = {**schema.DATASETS, **schema.WRITTEN}
    if name in datasets and config is None:
        if name in schema.WRITTEN:
            raise DataError(f"{text!r}: name a config: {', '.join(f'{name}/{c}' for c in datasets[name])}")
        config = next(iter(datasets[name]))
    if name not in datasets or config not in datasets[name]:
        close = difflib.get_close_matches(f"{name}/{config}" if config else name,
                                          known_names() if config else list(datasets), n=1, cutoff=0.6)
        raise DataError(f"unknown dataset {text!r}" + (f"; did you mean {close[0]!r}?" if close else
                        "; `dropj list` shows what is built, docs/schema.md every config"))
    return name, config, version


def default_data_dir() -> Path:
    """TFDS's data dir when none is given: $TFDS_DATA_DIR, else ~/tensorflow_datasets (TFDS's own rule,
    without importing TFDS)."""
    return Path(os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets").expanduser()


def locate(dataset: str, data_dir: Optional[str]) -> Path:
    """A built version folder given as a path, or the built 'NAME/CONFIG[:VERSION]' under `data_dir` (the newest
    version unless one is named; `find_built`); a name that is neither is one error saying what there is."""
    if os.path.isdir(dataset):
        return Path(dataset)
    if os.path.exists(dataset):
        raise DataError(f"{dataset}: not a directory")
    name, config, version = parse_name(dataset)
    return find_built(f"{name}/{config}", data_dir, version=version)


def versions_built(folder: Path) -> list[str]:
    """The version folders of a config folder that hold a finished build (a dataset_info.json), oldest first."""
    built = [v.name for v in folder.iterdir() if _VERSION.match(v.name) and (v / DATASET_INFO).exists()] \
        if folder.is_dir() else []
    return sorted(built, key=lambda v: tuple(int(n) for n in v.split(".")))


def find_built(dataset: str, data_dir: Optional[str], version: Optional[str] = None) -> Path:
    """The built version folder of NAME/CONFIG under `data_dir` (TFDS's default when None): `version`, or the
    newest; checked."""
    name, _, config = dataset.partition("/")
    root = Path(data_dir).expanduser() if data_dir else default_data_dir()
    if root.exists() and not root.is_dir():
        raise DataError(f"{root}: not a directory (--data_dir is the folder datasets are built in)")
    built = versions_built(root / name / config)
    if version is not None and built and version not in built:
        raise DataError(f"{dataset}:{version} is not built under {root}; built: {', '.join(built)}")
    if not built:
        if name in WRITTEN_BY:
            how = f"`{WRITTEN_BY[name].format(root=root)}` writes it"
        else:
            how = f"build it with `dropj build {dataset} --manual_dir M --data_dir {root}`"
        raise DataError(f"{dataset}: not built under {root} ({how})")
    chosen = root / name / config / (version or built[-1])
    check(chosen)
    return chosen


_INCOMPLETE = re.compile(r"^(?P<version>\d+\.\d+\.\d+)\.incomplete\.[A-Z0-9]{6}$")  # TFDS's name for a build under way


def catalog(data_dir: Optional[str] = None, only: Optional[tuple[str, str]] = None) -> list[dict]:
    """What is under a data dir (TFDS's default when None), one entry per version folder of a DROPJ config, in
    the schema's order: `dataset`, `config`, `version`, `kind`, `status` ('built'; 'incomplete': a build or a
    write that did not finish, or one under way; 'unreadable': it fails `check_shards`, and `problem` says
    why), `items` (episodes, queries, responses or sketches), `bytes` (the files of the version folder),
    `built` (when its dataset_info.json was written, seconds since the epoch). Every finished folder is
    checked as a reader checks it; nothing is imported but the schema's features. `only`: one (name, config)."""
    root = Path(data_dir).expanduser() if data_dir else default_data_dir()
    if not root.is_dir():
        raise DataError(f"{root}: {'not a directory' if root.exists() else 'no such directory'}")
    found = []
    for name, configs in {**schema.DATASETS, **schema.WRITTEN}.items():
        for config, spec in configs.items():
            folder = root / name / config
            if only not in (None, (name, config)) or not folder.is_dir() or folder.is_symlink():
                continue
            for version_dir in sorted(folder.iterdir(), key=lambda p: p.name):
                incomplete = _INCOMPLETE.match(version_dir.name)
                if not version_dir.is_dir() or not (incomplete or _VERSION.match(version_dir.name)):
                    continue
                entry = {"dataset": name, "config": config, "version": incomplete["version"] if incomplete
                         else version_dir.name, "kind": spec.kind, "status": "built", "items": None,
                         "bytes": sum(p.stat().st_size for p in version_dir.iterdir()
                                      if p.is_file() and not p.is_symlink()),
                         "built": None, "path": str(version_dir)}
                if incomplete or not (version_dir / DATASET_INFO).is_file():
                    entry["status"] = "incomplete"
                else:
                    try:
                        _, _, shards = check_shards(version_dir)
                        entry["items"] = sum(count for _, count in shards)
                        entry["built"] = (version_dir / DATASET_INFO).stat().st_mtime
                    except (DataError, OSError) as exc:
                        entry["status"], entry["problem"] = "unreadable", str(exc)[:300]
                found.append(entry)
    return found


def check(builder_dir: Path) -> tuple[str, schema.Spec]:
    """Verifies a built dataset directory before TFDS reads it; returns (dataset name, spec)."""
    name, spec, _ = check_shards(builder_dir)
    return name, spec


def check_shards(builder_dir: Path) -> tuple[str, schema.Spec, list[tuple[Path, int]]]:
    """`check`, and the train split's shard files with the number of records each holds, as the
    `dataset_info.json` that was checked lists them (it is read once)."""
    builder_dir = Path(builder_dir)
    if not builder_dir.is_dir():
        raise DataError(f"{builder_dir}: no such directory")
    if not (builder_dir / DATASET_INFO).exists():
        hint = describe_layout(builder_dir)
        raise DataError(hint or f"{builder_dir}: no {DATASET_INFO}; not a built dataset (build it with tfds build)")
    info = read_json(builder_dir / DATASET_INFO, JSON_LIMITS[DATASET_INFO])
    if not isinstance(info, dict):
        raise DataError(f"{builder_dir / DATASET_INFO}: expected a JSON object")
    name, config = info.get("name"), info.get("configName")
    metadata = read_metadata(builder_dir)
    preset = metadata.get("preset") if isinstance(metadata.get("preset"), str) else None
    try:
        spec = schema.spec_for(str(name), str(preset or config))
    except KeyError:
        raise DataError(f"{builder_dir}: holds {str(name)[:60]}/{str(config)[:60]}, not a DROPJ dataset "
                        f"({', '.join([*schema.DATASETS, *schema.WRITTEN])})") from None
    if info.get("fileFormat", "tfrecord") != "tfrecord":
        raise DataError(f"{builder_dir / DATASET_INFO}: file format {str(info.get('fileFormat'))[:40]!r}; "
                        "DROPJ datasets are TFRecord")
    shards = _check_splits(builder_dir, str(name), info.get("splits"))
    _check_as_tfds_parses(builder_dir / DATASET_INFO, info, "DatasetInfo")
    from dropj_datasets.features import without_docs

    features = read_json(builder_dir / FEATURES, JSON_LIMITS[FEATURES])
    if without_docs(features) != without_docs(expected_features(str(name), spec)):
        raise DataError(f"{builder_dir / FEATURES}: does not match the features of {name}/{config} in this "
                        "version of the schema (refused before TFDS reads it: features.json names the Python "
                        "classes TFDS imports)")
    _check_as_tfds_parses(builder_dir / FEATURES, features, "Feature")  # the docs, which were left out above
    return str(name), spec, shards


def _check_as_tfds_parses(path: Path, value: Any, message: str) -> None:
    """A JSON file read as TFDS reads it, into its proto `message` ('DatasetInfo' or 'Feature'; unknown
    fields refused, as TFDS refuses them): a value of the wrong type or range (an integer past int64, a
    number for a description) is one error here, not a ParseError inside TFDS later."""
    from google.protobuf import json_format
    from tensorflow_datasets.core.proto import dataset_info_pb2, feature_pb2

    proto = dataset_info_pb2.DatasetInfo() if message == "DatasetInfo" else feature_pb2.Feature()
    try:
        json_format.ParseDict(value, proto)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise DataError(f"{path}: not a {message} TFDS reads ({str(exc).splitlines()[0][:160]})") from None
    if message == "DatasetInfo" and not _VERSION.match(proto.version):
        raise DataError(f"{path}: version {proto.version[:40]!r}; TFDS reads versions like 1.0.0")


def _check_splits(builder_dir: Path, name: str, splits: Any) -> list[tuple[Path, int]]:
    """The train split's (shard file, record count) pairs, each shard a regular file its count fits."""
    where = builder_dir / DATASET_INFO
    if not isinstance(splits, list) or not splits:
        raise DataError(f"{where}: no splits")
    split = splits[0]
    if len(splits) != 1 or not isinstance(split, dict) or split.get("name") != "train":
        raise DataError(f"{where}: DROPJ datasets have one split, 'train'")
    template = split.get("filepathTemplate", SHARD_TEMPLATE)
    if template not in (SHARD_TEMPLATE, SHARD_INDEX_TEMPLATE):
        raise DataError(f"{where}: shard file template {str(template)[:80]!r}; only TFDS's own "
                        f"{SHARD_TEMPLATE!r} and {SHARD_INDEX_TEMPLATE!r} are read")
    lengths = split.get("shardLengths", [])
    if not isinstance(lengths, list) or not all(
            (type(n) is int and n >= 0) or (type(n) is str and n.isascii() and n.isdigit()) for n in lengths):
        raise DataError(f"{where}: shardLengths must be a list of counts")
    if len(lengths) > MAX_SHARDS:
        raise DataError(f"{where}: {len(lengths):,} shards, more than the {MAX_SHARDS:,} read")
    shards = []
    for index, count in enumerate(lengths):
        shard = builder_dir / shard_name(name, template, index, len(lengths))
        try:
            with open_regular(shard, "shard") as f:
                size = os.fstat(f.fileno()).st_size
        except DataError as exc:
            raise DataError(f"{exc} (listed in {where})") from None
        digits = str(count).lstrip("0") or "0"
        if len(digits) > len(str(size)) or int(digits) > size // RECORD_FRAMING:
            claim = f"{int(digits):,}" if len(digits) <= 30 else f"a {len(digits):,}-digit number of"
            raise DataError(f"{where}: shard {index} ({shard.name}) claims {claim} records; its "
                            f"{size:,} bytes hold at most {size // RECORD_FRAMING:,}")
        shards.append((shard, int(digits)))
    return shards


def read_metadata(builder_dir: Path) -> dict:
    path = Path(builder_dir) / METADATA
    if not path.exists():
        return {}
    value = read_json(path, JSON_LIMITS[METADATA])
    if not isinstance(value, dict):
        raise DataError(f"{path}: expected a JSON object")
    return value


def checked_protocol(value: Any, where: str) -> int:
    """A pickle protocol taken from a dataset's metadata: 2 to 5, as in the release."""
    if type(value) is not int or not 2 <= value <= 5:
        raise DataError(f"{where}: pickle protocol {str(value)[:20]!r}; expected 2 to 5")
    return value


def checked_name(name: Any, allowed: tuple[str, ...], where: str) -> str:
    """A file name taken from a dataset's metadata: only one of the schema's own names."""
    if name not in allowed:
        raise DataError(f"{where}: file name {str(name)[:80]!r} is not one of this config's release files "
                        f"{list(allowed)}; refused")
    return str(name)


def resolve_under(root: Path, relative: str) -> Path:
    """`root/relative`, refused unless it stays under `root` (no '..', no absolute path, no symlink out)."""
    path = Path(relative)
    if not relative or path.is_absolute() or ".." in path.parts or "\\" in relative or "\0" in relative:
        raise DataError(f"output name {relative[:80]!r} is not a plain relative path; refused")
    base = root.resolve()
    target = (base / path).resolve()  # follows any symlink among the existing components
    if os.path.commonpath([str(base), str(target)]) != str(base):
        raise DataError(f"{root / relative}: resolves to {target}, outside {base}; refused")
    return base / path
