"""The proof that nothing was lost (`dropj verify`): each source file against the built dataset's export.

`verify` streams each source file and the exported items side by side and
compares them exactly (`episodes.compare`): same nesting, Python types
(int rewards, float `done`), numpy dtypes and shapes, and every bit.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Iterable, Optional

from dropj.converters.release import episodes as episodes_lib
from dropj.converters.release import kinds, sources
from dropj.converters.store import legacy_pickle
from dropj.converters.roundtrip.built import BuiltDataset
from dropj.converters.roundtrip.export import progress_bar
from dropj.converters.release.preferences import MAX_VIDEO_BYTES
from dropj.converters.release.kinds import LegacyFile

@dataclasses.dataclass
class FileReport:
    name: str
    source: str
    episodes: int = 0
    mismatches: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches


def verify(dataset: str, manual_dir: str | os.PathLike, data_dir: Optional[str] = None,
           log: Callable[[str], None] = print, progress: bool = False) -> list[FileReport]:
    """Compares every source file of the config with the built dataset's export; reports per item.

    Each list file is also recounted by an independent parse (`legacy_pickle.count_items`), so a
    source whose items the streaming reader would count differently from `pickle.load` shows up.
    """
    built = BuiltDataset.open(dataset, data_dir)
    found = sources.index(manual_dir)
    reports = []
    converter = kinds.converter(built.spec)
    limits = converter.reader_limits(built.spec)
    for legacy in built.legacy_files():
        if legacy.kind == "raw":
            reports.append(_compare_raw(legacy, manual_dir, found, log))
            continue
        refs = sources.locate(manual_dir, (legacy.name,), required=(), found=found)
        if legacy.name not in refs:
            log(f"{legacy.name}: not under {manual_dir}, skipped")
            continue
        ref = refs[legacy.name]
        report = FileReport(legacy.name, str(ref))
        with ref.open() as f:
            if legacy.kind == "list":
                bar = progress_bar(progress, built.count, f"verify {legacy.name}")
                try:
                    _compare_streams(legacy_pickle.iter_list(f, str(ref), size=ref.size, limits=limits),
                                     legacy.content(), report, log, bar)
                finally:
                    bar.close()
            else:
                report.episodes = 1
                report.mismatches = episodes_lib.compare(legacy_pickle.load(f, str(ref), size=ref.size),
                                                         legacy.content())
                log(f"{legacy.name}: " + ("OK (exact)" if report.ok else "MISMATCH " + "; ".join(report.mismatches)))
        if legacy.kind == "list" and report.ok:
            with ref.open() as f:
                counted = legacy_pickle.count_items(f, str(ref))
            if counted != report.episodes:
                report.mismatches.append(f"an independent parse counts {counted} items, the reader "
                                         f"{report.episodes}")
        reports.append(report)
    if converter.complete_sources:
        # An episode file present now but not when the dataset was built (say the scaled dream file).
        reproduced = {r.name for r in reports}
        for name, ref in sources.locate(manual_dir, built.spec.all_sources, required=(), found=found).items():
            if name not in reproduced:
                reports.append(FileReport(name, str(ref), mismatches=["present in the source but not in the dataset"]))
    return reports


def _compare_raw(legacy: LegacyFile, manual_dir: str | os.PathLike, found: dict,
                 log: Callable[[str], None]) -> FileReport:
    report = FileReport(legacy.name, str(manual_dir))
    for name, data in legacy.content():
        refs = sources.locate(manual_dir, (name,), required=(), found=found)
        if name not in refs:
            report.mismatches.append(f"{name}: in the dataset but not under {manual_dir}")
            continue
        same = refs[name].read_bytes(MAX_VIDEO_BYTES) == data
        report.episodes += 1
        if not same:
            report.mismatches.append(f"{name}: bytes differ")
        log(f"{name}: " + ("OK (identical bytes)" if same else "MISMATCH (bytes differ)"))
    return report


def _compare_streams(source: Iterable[Any], exported: Iterable[Any], report: FileReport,
                     log: Callable[[str], None], bar: Any = None) -> None:
    sentinel = object()
    source_it, exported_it = iter(source), iter(exported)
    index = 0
    while True:
        a, b = next(source_it, sentinel), next(exported_it, sentinel)
        if a is sentinel and b is sentinel:
            break
        if a is sentinel or b is sentinel:
            extra = "dataset" if a is sentinel else "source"
            report.mismatches.append(f"episode {index}: only in the {extra} (episode counts differ)")
            log(f"{report.name} episode {index}: MISMATCH only in the {extra}")
            break
        diffs = episodes_lib.compare(a, b, f"episode {index}")
        report.episodes += 1
        length = len(a) if hasattr(a, "__len__") else 1
        if diffs:
            report.mismatches += diffs
            log(f"{report.name} episode {index}: MISMATCH\n  " + "\n  ".join(diffs[:10]))
        else:
            log(f"{report.name} episode {index}: OK ({length} transitions, exact)")
        if bar is not None:
            bar.update(1)
        index += 1
