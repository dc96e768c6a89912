"""The long run of the reader's differential fuzzer (tests/factory/fuzzing.py): at least 100,000 inputs.

    .venv/bin/python tests/benchmarks/fuzz_reader.py --inputs 100000 --write-docs

Prints the figures (inputs/s, crashes, hangs, differentials: all must be 0) and, with --write-docs,
puts them into docs/benchmarks.md. Exit status 1 on any finding; `--findings DIR` keeps their inputs.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import sys
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from factory import fuzzing  # noqa: E402  (first: it sets OPENBLAS_NUM_THREADS before numpy loads)
import bench_build  # noqa: E402  (machine, versions, code version, publish)

HEADING = "## Fuzzing the safe reader"


def section(summary: fuzzing.Summary, args: argparse.Namespace) -> str:
    s = summary
    when = datetime.date.today().isoformat()
    return "\n".join([
        HEADING,
        "",
        f"Command: `.venv/bin/python tests/benchmarks/fuzz_reader.py --inputs {args.inputs} --seed {args.seed} "
        f"--write-docs`, on {when}, {bench_build.code_version()}, {bench_build.machine()}; "
        f"{bench_build.versions()}.",
        "",
        "Each input is a release-format pickle (episodes, dream episodes, responses, initial states, data.pkl, "
        "time files, sketches; protocols 2 to 5) after 1 to 4 mutations: byte flips, truncations, dictionary words "
        "(dangerous opcodes, globals, forged numpy dtype states, huge claimed lengths, tuple bombs) at opcode "
        "boundaries, splices of opcode runs between seeds, boundary values in integer arguments; 30 % get only "
        "data flips, so that the pickle stays valid and its values are compared. The seven attacks of issue 9 run "
        "first. The reader (`load` and `iter_list`) and the oracle (`pickle.load` with `find_class` restricted to "
        "the same globals) each run in a forked child with a memory and a time limit "
        f"({fuzzing.READER_SECONDS:.0f} s and {fuzzing.ORACLE_SECONDS:.0f} s).",
        "",
        "| figure | value |",
        "|---|---:|",
        f"| inputs | {s.inputs:,} |",
        f"| inputs per second (2 children at a time) | {s.inputs_per_second:,.0f} |",
        f"| refused by the reader (a `DataError` naming the file) | {s.reader_refused:,} |",
        f"| accepted by the reader, and equal to the oracle's value | {s.reader_accepted:,} |",
        f"| oracle crashed (a signal: numpy memory corruption) | {s.oracle_crashes:,} |",
        f"| oracle hung (past its time limit) | {s.oracle_hangs:,} |",
        f"| oracle ran out of memory or recursion | {s.oracle_exhausted:,} |",
        f"| **reader crashes** (a signal, or an exception other than `DataError`) | **{s.crashes}** |",
        f"| **reader hangs** | **{s.hangs}** |",
        f"| **differentials** (the reader returned what the oracle does not) | **{s.differentials}** |",
        f"| unbounded or unnamed error messages | {s.bad_messages} |",
        "",
        "Every input the oracle crashed, hung or ran out of memory on was refused by the reader.",
        "",
    ])


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--inputs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--findings", type=Path, help="keep the inputs of findings here")
    parser.add_argument("--write-docs", action="store_true", help="update the section in docs/benchmarks.md")
    args = parser.parse_args(argv)

    def progress(summary: fuzzing.Summary) -> None:
        print(f"{summary.inputs:,} inputs, {summary.inputs_per_second:.0f}/s, accepted {summary.reader_accepted:,}, "
              f"findings {len(summary.findings)}", file=sys.stderr, flush=True)

    summary = fuzzing.run(args.inputs, args.seed, args.jobs, extra=fuzzing.attacks(), progress=progress)
    if args.findings and summary.findings:
        args.findings.mkdir(parents=True, exist_ok=True)
        for i, item in enumerate(summary.findings):
            (args.findings / f"finding-{i}.pkl").write_bytes(base64.b64decode(item["bytes"]))
    for item in summary.findings[:10]:
        print(f"FINDING {item['kind']}: {item['input']}: {item['detail']}")
    bench_build.publish(section(summary, args), args.write_docs and summary.clean)
    return 0 if summary.clean else 1


if __name__ == "__main__":
    sys.exit(main())
