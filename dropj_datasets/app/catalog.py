"""`dropj build`, `dropj list` and `dropj info`: build configs with TFDS's own builder, say what is built under a
data dir, and show one config's card.

    results = build('dropj_carracing/real', manual_dir='M', data_dir='D')   # or 'dropj_carracing': every config
    entries = dataset_dir.catalog('D')                                      # what `dropj list` prints
    facts = card('dropj_carracing/real', data_dir='D')                      # what `dropj info` prints

`build` is `tfds.builder(NAME/CONFIG, data_dir).download_and_prepare(...)`, the same files `tfds build` writes,
with our checks first (the name, the version, the manual dir and which of its release files are there), a
progress bar of the examples made, and TFDS's own printing kept off the terminal.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import datetime
import io
import logging
import time
from pathlib import Path
from typing import Any, Callable, Optional

from dropj_datasets import schema
from dropj_datasets.schema import DataError

MANUAL_SUBDIR = ("downloads", "manual")  # TFDS's manual dir when none is given: DATA_DIR/downloads/manual


@dataclasses.dataclass
class Built:
    """One config `build` was asked for: what happened, where, how many items, how long."""

    dataset: str  # NAME/CONFIG:VERSION
    status: str  # 'built', 'already built', 'skipped: ...'
    path: Optional[Path] = None
    items: int = 0
    bytes: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        if self.status == "built":
            return (f"built {self.dataset}: {self.items} {_items_word(self.dataset, self.items)}, "
                    f"{self.bytes / 1e6:.2f} MB in {self.seconds:.1f} s -> {self.path}")
        if self.status == "already built":
            return f"{self.dataset}: already built in {self.path} (delete that folder to build it again)"
        return f"{self.dataset}: {self.status}"


def _items_word(dataset: str, count: int) -> str:
    """What the config's items are called ('episode', 'queries', ...): `views.noun`, by the count."""
    from dropj_datasets.app import views

    name, _, config = dataset.partition(":")[0].partition("/")
    return views.noun(schema.spec_for(name, config), plural=count != 1)


def builder_version(name: str) -> str:
    """The version this suite builds of a release dataset (its builder's VERSION), or writes of one of ours."""
    if name in schema.WRITTEN:
        from dropj.converters.release import kinds

        return str(kinds.store(next(iter(schema.WRITTEN[name].values()))).VERSION)
    import tensorflow_datasets as tfds

    import dropj_datasets  # noqa: F401  (registers the builders)

    return str(tfds.builder_cls(name).VERSION)


def _configs(dataset: str) -> tuple[str, list[str], Optional[str]]:
    """(name, the configs asked for, the version asked for) of NAME or NAME/CONFIG[:VERSION]."""
    from dropj.converters.store import dataset_dir

    name = dataset.partition(":")[0]
    if "/" not in name and name in schema.DATASETS:
        version = dataset.partition(":")[2] or None
        if version is not None:
            dataset_dir.parse_name(f"{name}/{next(iter(schema.DATASETS[name]))}:{version}")  # its form checked
        return name, list(schema.DATASETS[name]), version
    if "/" not in name and name in schema.WRITTEN:
        raise DataError(f"{name} is written by `{dataset_dir.WRITTEN_BY[name].split(' --')[0]}`, not built from "
                        "release files")
    name, config, version = dataset_dir.parse_name(dataset)
    if name in schema.WRITTEN:
        raise DataError(f"{name}/{config} is written by `{dataset_dir.WRITTEN_BY[name].split(' --')[0]}`, not built "
                        "from release files")
    return name, [config], version


def _quiet_tfds() -> Any:
    """TFDS's own output of a build off the terminal: its progress bars, its "Downloading and preparing"
    and "Dataset ... prepared" lines (printed), and Beam's and absl's logs below warnings."""
    import tensorflow_datasets as tfds

    tfds.disable_progress_bar()
    for logger in ("absl", "tensorflow", "apache_beam"):
        logging.getLogger(logger).setLevel(logging.ERROR)
    return contextlib.redirect_stdout(io.StringIO())


def build(dataset: str, manual_dir: Optional[str] = None, data_dir: Optional[str] = None, *,
          beam_pipeline_options: Optional[str] = None, progress: bool = True,
          log: Callable[[str], None] = print) -> list[Built]:
    """Builds NAME/CONFIG[:VERSION] (or every config of NAME whose release files are under `manual_dir`) into
    `data_dir` (TFDS's default when None) with TFDS's builder; a config already built is left as it is.

    `manual_dir` defaults to TFDS's, DATA_DIR/downloads/manual. With NAME alone, a config none of whose release
    files are there is skipped (and said); one with some of them is built, and a missing file is its error.
    `beam_pipeline_options`: as `tfds build --beam_pipeline_options` takes them ('runner=DirectRunner,...').
    """
    from dropj.converters.release import sources
    from dropj.converters.store import dataset_dir

    name, configs, version = _configs(dataset)
    root = Path(data_dir).expanduser() if data_dir else dataset_dir.default_data_dir()
    if root.exists() and not root.is_dir():
        raise DataError(f"{root}: not a directory (--data_dir is the folder to build in)")
    manual = Path(manual_dir).expanduser() if manual_dir else root.joinpath(*MANUAL_SUBDIR)
    if not manual.is_dir():
        raise DataError(f"{manual}: {'not a directory' if manual.exists() else 'no such directory'} (--manual_dir "
                        "is the folder holding the release's .zip or .pkl files; docs/build_and_load.md)")
    found = sources.index(manual)
    current = builder_version(name)
    if version is not None and version != current:
        raise DataError(f"{name}:{version}: this suite builds version {current} of {name} "
                        f"(`dropj build {name}/{configs[0] if len(configs) == 1 else 'CONFIG'}:{current}`)")
    beam = _beam_config(beam_pipeline_options)
    quiet = _quiet_tfds()
    import tensorflow_datasets as tfds

    results = []
    for config in configs:
        spec = schema.DATASETS[name][config]
        full = f"{name}/{config}:{current}"
        missing = [group for group in spec.required_sources() if not any(found.candidates(f) for f in group)]
        if missing:
            lacking = ", ".join(" or ".join(group) for group in missing)
            if len(configs) == 1:
                raise DataError(f"{manual}: {name}/{config} needs {lacking}, not found there (it is built from "
                                f"{spec.needs()}; docs/build_and_load.md)")
            results.append(Built(full, f"skipped: {lacking} not under {manual}"))
            log(results[-1].line())
            continue
        builder = tfds.builder(f"{name}/{config}", data_dir=str(root))
        path = Path(builder.data_dir)
        if builder.is_prepared():
            results.append(Built(full, "already built", path))
            log(results[-1].line())
            continue
        bar = _bar(progress, full, _items_word(full, 2))
        builder.on_example = functools.partial(bar.update, 1)
        start = time.perf_counter()
        try:
            with quiet:
                builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
                    manual_dir=str(manual), **beam))
        finally:
            bar.close()
        items = sum(split.num_examples for split in builder.info.splits.values())
        size = sum(p.stat().st_size for p in path.iterdir() if p.is_file())
        results.append(Built(full, "built", path, items, size, time.perf_counter() - start))
        log(results[-1].line())
    if all(r.status.startswith("skipped") for r in results):
        raise DataError(f"{manual}: none of the release files of {name} is here (docs/build_and_load.md lists "
                        "them; `dropj info NAME/CONFIG` names each config's)")
    return results


def _beam_config(options: Optional[str]) -> dict:
    if not options:
        return {}
    try:
        from apache_beam.options.pipeline_options import PipelineOptions
    except ImportError:
        raise DataError("--beam_pipeline_options needs Apache Beam: pip install -e '.[beam]'") from None
    return {"beam_options": PipelineOptions(flags=[f"--{option}" for option in options.split(",")])}


def _bar(enabled: bool, what: str, unit: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(desc=what, unit=f" {unit}", disable=None if enabled else True, dynamic_ncols=True, leave=False)


# --- what is built, and one config's card -------------------------------------------------------------

def when(epoch: Optional[float]) -> str:
    return "-" if epoch is None else datetime.datetime.fromtimestamp(epoch).isoformat(" ", "minutes")


def list_lines(entries: list[dict], root: str) -> list[str]:
    """`dropj list`'s table: one line per version folder."""
    if not entries:
        return [f"nothing built under {root} (`dropj build NAME/CONFIG --manual_dir M --data_dir {root}` builds "
                "one; `dropj info NAME/CONFIG` says what each holds)"]
    rows = [("dataset", "kind", "items", "MB", "built", "status")]
    for e in entries:
        status = e["status"] if e["status"] != "unreadable" else f"unreadable: {e['problem'][:120]}"
        rows.append((f"{e['dataset']}/{e['config']}:{e['version']}", e["kind"],
                     "-" if e["items"] is None else str(e["items"]), f"{e['bytes'] / 1e6:.2f}", when(e["built"]),
                     status))
    widths = [max(len(row[k]) for row in rows) for k in range(5)]
    return [" ".join(cell.ljust(width) if k in (0, 1, 4) else cell.rjust(width)
                     for k, (cell, width) in enumerate(zip(row, widths))) + f"  {row[5]}" for row in rows]


def card(dataset: str, data_dir: Optional[str] = None) -> dict:
    """One config's facts: what it is, its environment, fields (shape, dtype, encoding, units, meaning), its
    release files, what is built of it under `data_dir`, licence, homepage and citation."""
    from dropj.converters.store import dataset_dir
    from dropj_datasets import features

    name, config, version = dataset_dir.parse_name(dataset)
    spec = schema.spec_for(name, config)
    package = Path(__file__).resolve().parent.parent / name
    citation = (package / "CITATIONS.bib").read_text() if (package / "CITATIONS.bib").is_file() else \
        (Path(__file__).resolve().parent.parent / "dropj_carracing" / "CITATIONS.bib").read_text()
    try:  # only this config's folders are checked
        built = [e for e in dataset_dir.catalog(data_dir, only=(name, config))
                 if version is None or e["version"] == version]
    except DataError:
        built = []
    return {
        "dataset": f"{name}/{config}", "version": builder_version(name), "kind": spec.kind,
        "description": spec.description, "environment": spec.env.description,
        "made_by": (dataset_dir.WRITTEN_BY[name].split(" --")[0] if name in schema.WRITTEN else "dropj build"),
        "source_files": list(spec.all_sources) if name in schema.DATASETS else [],
        "fields": [{"name": f.name, "shape": list(f.shape), "dtype": f.dtype,
                    "encoding": "text" if f.dtype == "str" else f.encoding, "units": f.units, "range": f.range,
                    "meaning": f.doc} for f in spec.fields()],
        "built": [{k: e[k] for k in ("version", "status", "items", "bytes", "built", "path")} for e in built],
        "data_dir": str(Path(data_dir).expanduser() if data_dir else dataset_dir.default_data_dir()),
        "license": features.LICENSE, "homepage": features.HOMEPAGE, "citation": citation.strip(),
    }


def card_lines(facts: dict) -> list[str]:
    """`dropj info`'s text."""
    lines = [f"{facts['dataset']}:{facts['version']} ({facts['kind']})", f"  {facts['description']}.",
             f"  environment: {facts['environment']}."]
    if facts["source_files"]:
        lines.append(f"  release files: {', '.join(facts['source_files'])}")
    else:
        lines.append(f"  written by `{facts['made_by']}`")
    if facts["built"]:
        for b in facts["built"]:
            what = (f"{b['items']} {_items_word(facts['dataset'], b['items'])}" if b["items"] is not None
                    else b["status"])
            lines.append(f"  built under {facts['data_dir']}: {b['version']}, {what}, {b['bytes'] / 1e6:.2f} MB, "
                         f"{when(b['built'])} ({b['path']})")
    else:
        lines.append(f"  not built under {facts['data_dir']}")
    lines.append(f"  fields ({len(facts['fields'])}):")
    width = max(len(f["name"]) for f in facts["fields"])
    for f in facts["fields"]:
        lines.append(f"    {f['name'].ljust(width)}  {str(tuple(f['shape'])):14} {f['dtype']:8} {f['encoding']:6} "
                     f"{f['meaning']}")
    lines += [f"  licence: {facts['license']}; homepage: {facts['homepage']}", "  citation:"]
    lines += [f"    {line}" for line in facts["citation"].splitlines()]
    return lines


__all__ = ["Built", "build", "builder_version", "card", "card_lines", "list_lines"]
