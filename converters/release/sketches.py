"""ReQueST and DROS query data (DATA_FORMATS.md 6) <-> RLDS episodes.

A sketch is a list of up to 49 labelled transitions `(s, a, r, s_next, None,
None)`. Steps the person skipped are simply absent, so `s_next` of one tuple
need not be `s` of the next: each RLDS step keeps its own `next_observation`
rather than relying on the next step's observation, and there is no extra
final step. The companion time files are kept whole, as JSON, in the
dataset's metadata (`times_to_metadata`), so that export writes them back.
"""

from __future__ import annotations

import collections
import math
import struct
from typing import Any, Iterator

import numpy as np

from dropj.converters.store import dataset_dir, legacy_pickle
from dropj.converters.release import kinds, sources
from dropj.converters.release.kinds import LegacyFile
from dropj_datasets import schema
from dropj_datasets.schema import DataError, SketchSpec, describe


def validate_sketch(sketch: Any, spec: SketchSpec, *, file: str, index: int) -> list[tuple]:
    if not isinstance(sketch, list):
        raise DataError(file=file, episode=index, field="sketch", expected="list of transitions",
                        got=type(sketch).__name__)
    shape, dtype = (spec.env.latent_dim,), np.dtype(spec.dtype)
    problems = []
    for t, item in enumerate(sketch):
        where = schema.format_location(file, index, t, None)
        if not isinstance(item, tuple) or len(item) != 6 or item[4] is not None or item[5] is not None:
            problems.append(f"{where}: expected (s, a, r, s_next, None, None), got {type(item).__name__}")
            continue
        s, a, r, s_next = item[:4]
        for name, value, want in (("s", s, shape), ("a", a, (3,)), ("s_next", s_next, shape)):
            if not isinstance(value, np.ndarray) or value.dtype != dtype or value.shape != want:
                got = f"ndarray {value.dtype}{list(value.shape)}" if isinstance(value, np.ndarray) \
                    else type(value).__name__
                problems.append(f"{where}, field '{name}': expected ndarray {dtype}{list(want)}, got {got}")
        if type(r) is not np.float64:
            problems.append(f"{where}, field 'r': expected numpy.float64, got {type(r).__name__}")
    if problems:
        raise DataError(problems[0] if len(problems) == 1 else
                        f"{len(problems)} problems:\n  " + "\n  ".join(problems[:20]))
    return sketch


def to_example(sketch: list[tuple], spec: SketchSpec, *, file: str, index: int) -> dict:
    n = len(sketch)
    dim, dtype = spec.env.latent_dim, np.dtype(spec.dtype)

    def column(k: int, shape: tuple) -> np.ndarray:
        return np.stack([item[k] for item in sketch]) if n else np.zeros((0,) + shape, dtype)

    meta = {schema.SOURCE_FILE: file.rsplit("!", 1)[-1].rsplit("/", 1)[-1], schema.SKETCH_INDEX: index}
    if spec.sketches_per_session:
        meta[schema.FEEDBACK_SESSION] = index // spec.sketches_per_session
    return {
        schema.STEPS: {
            schema.OBSERVATION: column(0, (dim,)),
            schema.ACTION: column(1, (3,)),
            schema.REWARD: np.array([item[2] for item in sketch], np.float64),
            schema.NEXT_OBSERVATION: column(3, (dim,)),
            schema.IS_FIRST: np.arange(n) == 0,
            schema.IS_LAST: np.arange(n) == n - 1,
            schema.IS_TERMINAL: np.zeros(n, bool),
        },
        schema.EPISODE_METADATA: meta,
    }


def iter_examples(spec: SketchSpec, sketches: Iterator[Any], file: str) -> Iterator[tuple[int, dict]]:
    for index, sketch in enumerate(sketches):
        yield index, to_example(validate_sketch(sketch, spec, file=file, index=index), spec, file=file, index=index)


def from_example(example: dict, spec: SketchSpec) -> list[tuple]:
    """A decoded example -> the release's sketch, with its dtypes and numpy.float64 rewards."""
    steps = example[schema.STEPS]
    dtype = np.dtype(spec.dtype)
    return [(np.array(s, dtype), np.array(a, dtype), np.float64(r), np.array(s_next, dtype), None, None)
            for s, a, r, s_next in zip(steps[schema.OBSERVATION], steps[schema.ACTION], steps[schema.REWARD],
                                       steps[schema.NEXT_OBSERVATION])]


# --- the time files, kept whole ----------------------------------------------------------------------

def _float_hex(value: float) -> str:
    return struct.pack("<d", value).hex()  # exact, whatever JSON does to floats


def times_to_metadata(value: Any, *, file: str, protocol: int) -> dict:
    """`request_traj_opt_times_*` (defaultdict(list) of floats) or `dros_all_query_times_*` (list of lists)."""
    def floats(items: Any, where: str) -> list[str]:
        if not isinstance(items, list) or any(type(x) is not float for x in items):
            raise DataError(f"{file}: {where}: expected a list of Python floats, got {describe(items)}")
        return [_float_hex(x) for x in items]

    if isinstance(value, collections.defaultdict) and value.default_factory is list:
        return {"protocol": protocol, "structure": "defaultdict(list)",
                "items": [[key, floats(items, f"key {describe(key)}")] for key, items in value.items()]}
    if isinstance(value, list):
        return {"protocol": protocol, "structure": "list of lists",
                "items": [floats(items, f"item {i}") for i, items in enumerate(value)]}
    raise DataError(f"{file}: expected defaultdict(list) or a list of lists of floats, got {type(value).__name__}")


def times_from_metadata(meta: Any, where: str = "metadata.json") -> Any:
    """Inverse of `times_to_metadata`; `meta` comes from a dataset's metadata.json and is checked."""
    def floats(items: Any) -> list[float]:
        if not isinstance(items, list) or not all(isinstance(x, str) and len(x) == 16 for x in items):
            raise DataError(f"{where}: time file values must be lists of 16-digit hex floats")
        try:
            return [struct.unpack("<d", bytes.fromhex(x))[0] for x in items]
        except ValueError:
            raise DataError(f"{where}: a time file value is not hex") from None

    structure = meta.get("structure") if isinstance(meta, dict) else None
    items = meta.get("items") if isinstance(meta, dict) else None
    if not isinstance(items, list):
        raise DataError(f"{where}: the time file has no list of items")
    if structure == "defaultdict(list)":
        out: collections.defaultdict = collections.defaultdict(list)
        for entry in items:
            if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
                raise DataError(f"{where}: time file entries must be [key, values]")
            out[entry[0]] = floats(entry[1])
        return out
    if structure == "list of lists":
        return [floats(entry) for entry in items]
    raise DataError(f"{where}: time file structure {str(structure)[:40]!r} is not one dropj writes")


def prepare(spec: SketchSpec, manual_dir: str, config: Any = None) -> tuple[dict, Iterator[tuple[int, dict]]]:
    """Dataset metadata (with the time file kept whole) and the sketch episodes."""

    required = (spec.sketches_file, spec.times_file)
    refs = sources.locate(manual_dir, spec.all_sources, required=required)  # the companions are optional
    times_ref, sketches_ref = refs[spec.times_file], refs[spec.sketches_file]
    kept = {}
    for name in spec.companion_files:
        if name in refs:
            ref = refs[name]
            if ref.size > MAX_KEPT_BYTES:
                raise DataError(f"{ref}: {ref.size:,} bytes; a companion file kept whole may hold {MAX_KEPT_BYTES:,}")
            with ref.open() as f:
                value = legacy_pickle.load(f, str(ref), size=ref.size)
            kept[name] = {"protocol": kinds.read_protocol(ref), "value": tree_to_metadata(value, str(ref))}
    with times_ref.open() as f:
        times = legacy_pickle.load(f, str(times_ref), size=times_ref.size)
    metadata = {
        "source_files": {name: str(ref) for name, ref in refs.items()},
        "sketches_pickle_protocol": kinds.read_protocol(sketches_ref),
        "times_file": {spec.times_file: times_to_metadata(times, file=str(times_ref),
                                                          protocol=kinds.read_protocol(times_ref))},
        "companion_files": kept,
    }

    def examples() -> Iterator[tuple[int, dict]]:
        with sketches_ref.open() as f:
            items = legacy_pickle.iter_list(f, str(sketches_ref), size=sketches_ref.size)
            for index, example in iter_examples(spec, items, str(sketches_ref)):
                yield kinds.example_key(index, str(sketches_ref)), example

    return metadata, examples()


def legacy_files(built: Any) -> list[LegacyFile]:
    """The sketches file, and the time file kept whole in the metadata."""
    spec, where = built.spec, built.metadata_file
    times = built.metadata().get("times_file")
    if not isinstance(times, dict) or len(times) != 1:
        raise DataError(f"{where}: times_file must hold exactly the file {spec.times_file}")
    [(times_name, times_meta)] = times.items()
    times_name = dataset_dir.checked_name(times_name, (spec.times_file,), where)
    protocol = dataset_dir.checked_protocol(times_meta.get("protocol") if isinstance(times_meta, dict) else None,
                                            where)
    files = [LegacyFile(spec.sketches_file, "list", built.protocol("sketches_pickle_protocol"),
                        lambda: (from_example(example, spec) for example in built.examples())),
             LegacyFile(times_name, "pickle", protocol, lambda: times_from_metadata(times_meta, where))]
    kept = built.metadata().get("companion_files", {})
    if not isinstance(kept, dict):
        raise DataError(f"{where}: companion_files is not a mapping")
    for name, meta in kept.items():
        name = dataset_dir.checked_name(name, spec.companion_files, where)
        if not isinstance(meta, dict):
            raise DataError(f"{where}: companion file {name}: not the metadata dropj writes")
        files.append(LegacyFile(name, "pickle", dataset_dir.checked_protocol(meta.get("protocol"), where),
                                lambda meta=meta, name=name: tree_from_metadata(meta.get("value"), f"{where}, {name}")))
    return files


def summarise(spec: SketchSpec, examples: Any) -> str:
    lengths = [len(example[schema.STEPS][schema.REWARD]) for example in examples]
    return f"{len(lengths)} sketches, {sum(lengths)} labelled steps"


CONVERTER = kinds.Converter(prepare, legacy_files, summarise)


# --- companion files kept whole (ReQueST's siblings and start states) --------------------------------------

MAX_KEPT_BYTES = 64 << 20  # one companion file, as stored in metadata.json
_KEPT_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16",
                "float32", "float64")


def tree_to_metadata(value: Any, where: str, depth: int = 0) -> Any:
    """A small pickled value (as the safe reader returned it) as exact JSON: every type and bit kept.

    dict (str keys), list, tuple, defaultdict(list), str, bool, int, float (its 8 bytes in hex), None,
    numpy scalars and numeric arrays (dtype, shape, base64 of the bytes). Anything else is refused.
    """
    import base64

    if depth > 32:
        raise DataError(f"{where}: nested deeper than 32 levels")
    if value is None or type(value) in (bool, str):
        return {"t": type(value).__name__, "v": value}
    if type(value) is int:
        return {"t": "int", "v": str(value)}
    if type(value) is float:
        return {"t": "float", "v": _float_hex(value)}
    if isinstance(value, np.ndarray) or isinstance(value, np.generic):
        array = np.asarray(value)
        if array.dtype.name not in _KEPT_DTYPES:
            raise DataError(f"{where}: numpy dtype {array.dtype} is not kept")
        return {"t": "ndarray" if isinstance(value, np.ndarray) else "scalar", "dtype": array.dtype.str,
                "shape": list(array.shape), "v": base64.b64encode(array.tobytes()).decode("ascii")}
    if isinstance(value, collections.defaultdict) and value.default_factory is list:
        return {"t": "defaultdict(list)", "v": [[k, tree_to_metadata(v, where, depth + 1)] for k, v in value.items()
                                                if isinstance(k, str) or _bad_key(where, k)]}
    if type(value) is dict:
        return {"t": "dict", "v": [[k, tree_to_metadata(v, where, depth + 1)] for k, v in value.items()
                                   if isinstance(k, str) or _bad_key(where, k)]}
    if type(value) in (list, tuple):
        return {"t": type(value).__name__, "v": [tree_to_metadata(v, where, depth + 1) for v in value]}
    raise DataError(f"{where}: {describe(value)} is not a value a companion file may hold")


def _bad_key(where: str, key: Any) -> bool:
    raise DataError(f"{where}: dict key {describe(key)} is not a string")


def tree_from_metadata(meta: Any, where: str, depth: int = 0) -> Any:
    """Inverse of `tree_to_metadata`; `meta` comes from an untrusted metadata.json and is checked."""
    import base64

    if depth > 32 or not isinstance(meta, dict) or "t" not in meta:
        raise DataError(f"{where}: a kept value is not in the form dropj writes")
    kind, value = meta["t"], meta.get("v")
    if kind == "NoneType" and value is None:
        return None
    if kind in ("bool", "str") and type(value).__name__ == kind:
        return value
    if kind == "int" and isinstance(value, str) and len(value) < 400:
        try:
            return int(value)
        except ValueError:
            pass
    if kind == "float" and isinstance(value, str) and len(value) == 16:
        try:
            return struct.unpack("<d", bytes.fromhex(value))[0]
        except ValueError:
            pass
    if kind in ("ndarray", "scalar") and isinstance(value, str):
        dtype, shape = meta.get("dtype"), meta.get("shape")
        if isinstance(dtype, str) and isinstance(shape, list) and all(type(n) is int and n >= 0 for n in shape):
            try:
                dt = np.dtype(dtype)
            except TypeError:
                dt = None
            if dt is not None and dt.name in _KEPT_DTYPES and dt.str == dtype:
                try:
                    raw = base64.b64decode(value, validate=True)
                except ValueError:
                    raw = None
                if raw is not None and len(raw) == math.prod(shape) * dt.itemsize:
                    array = np.frombuffer(raw, dtype=dt).reshape(shape).copy()
                    return array if kind == "ndarray" else array[()]
    if kind in ("dict", "defaultdict(list)") and isinstance(value, list):
        out: Any = {} if kind == "dict" else collections.defaultdict(list)
        for item in value:
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
                raise DataError(f"{where}: a kept mapping entry is not [key, value]")
            out[item[0]] = tree_from_metadata(item[1], where, depth + 1)
        return out
    if kind in ("list", "tuple") and isinstance(value, list):
        items = [tree_from_metadata(v, where, depth + 1) for v in value]
        return items if kind == "list" else tuple(items)
    raise DataError(f"{where}: a kept value of type {str(kind)[:30]!r} is not in the form dropj writes")
