"""`dropj`: the suite's one command line. It parses arguments and dispatches;
the work lives in the modules it calls. `tfds build` / `tfds.load` remain the
standard way to build and load.

    dropj demo [--data_dir D]                      build every config from the embedded sample, load, verify
    dropj export DATASET --data_dir D --out O      built dataset -> release pickles
    dropj verify DATASET --data_dir D --manual_dir M   prove the dataset equals the source, per episode
    dropj make-sample [--out DIR]                  regenerate the embedded sample (deterministic)
    dropj schema-doc                               print docs/schema.md
    dropj train {vae,mdnrnn,reward} --data_dir D --out O [--dataset NAME/CONFIG] [--steps N] ...
                                                   train a model on a built dataset (resumes from O)
    dropj record --out D --user U [--env E] [--episodes N] [--seed S]
                                                   drive with the arrow keys; record RLDS episodes into D

DATASET is 'name/config' (e.g. dropj_carracing/real) or a built dataset directory.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # TFDS otherwise probes Google Cloud Storage for every builder; there is no network here.
    os.environ.setdefault("NO_GCE_CHECK", "true")


def _export(args: argparse.Namespace) -> int:
    from dropj.converters import to_legacy

    to_legacy.export(args.dataset, args.out, data_dir=args.data_dir)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from dropj.converters import to_legacy

    reports = to_legacy.verify(args.dataset, args.manual_dir, data_dir=args.data_dir,
                               log=(lambda line: None) if args.quiet else print)
    bad = [r for r in reports if not r.ok]
    for report in reports:
        status = "OK" if report.ok else f"MISMATCH ({len(report.mismatches)} differences)"
        print(f"{report.name}: {report.episodes} items checked against {report.source}: {status}")
        for line in report.mismatches[:20]:
            print(f"  {line}")
    if not reports:
        print(f"no source file of {args.dataset} found under {args.manual_dir}")
        return 1
    return 1 if bad else 0


def _demo(args: argparse.Namespace) -> int:
    from dropj.converters import demo

    return demo.run(args.data_dir)


def _make_sample(args: argparse.Namespace) -> int:
    from dropj.converters import make_sample

    return make_sample.main(["--out", args.out] if args.out else [])


def _schema_doc(args: argparse.Namespace) -> int:
    from dropj_datasets import schema

    sys.stdout.write(schema.markdown())
    return 0


def _train(args: argparse.Namespace) -> int:
    from dropj.loaders import training_data

    extra = {"sequence_length": args.sequence_length} if args.sequence_length is not None else {}
    history = training_data.train_from_dataset(args.model, args.data_dir, dataset=args.dataset, out_dir=args.out,
                                               steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                                               seed=args.seed, **extra)
    if history.train_loss:
        print(f"{args.model}: steps {history.step[0]}-{history.step[-1]}, train loss "
              f"{history.train_loss[0]:.4g} -> {history.train_loss[-1]:.4g}; written to {args.out}")
    return 0


def _window_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 1000x800, got {text!r}") from None
    return width, height


def _record(args: argparse.Namespace) -> int:
    from dropj.converters import record, record_window

    try:
        config = record_window.RecordConfig(env=args.env, out=args.out, user=args.user, episodes=args.episodes,
                                            seed=args.seed, fps=args.fps, max_steps=args.max_steps,
                                            window=args.window, screenshot=args.screenshot)
        record_window.run(config)
    except (ValueError, record.RecordingError) as exc:
        print(f"dropj record: error: {exc}", file=sys.stderr)
        return 2
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dropj", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="build, load and verify every config from the embedded sample")
    demo.add_argument("--data_dir", help="where to build (default: a fresh temporary directory)")
    demo.set_defaults(run=_demo)

    export = sub.add_parser("export", help="write a built dataset back as release pickles")
    export.add_argument("dataset", help="name/config, or a built dataset directory")
    export.add_argument("--data_dir", help="TFDS data dir the dataset was built in")
    export.add_argument("--out", required=True, help="directory for the pickles")
    export.set_defaults(run=_export)

    verify = sub.add_parser("verify", help="check a built dataset against its source files, per episode")
    verify.add_argument("dataset", help="name/config, or a built dataset directory")
    verify.add_argument("--data_dir", help="TFDS data dir the dataset was built in")
    verify.add_argument("--manual_dir", required=True, help="directory holding the release files")
    verify.add_argument("-q", "--quiet", action="store_true", help="only the summary, not a line per episode")
    verify.set_defaults(run=_verify)

    sample = sub.add_parser("make-sample", help="regenerate the embedded sample data")
    sample.add_argument("--out", help="write here instead of the packages' dummy_data folders")
    sample.set_defaults(run=_make_sample)

    train = sub.add_parser("train", help="train a model on a built dataset (resumes from OUT/checkpoint.pt)")
    train.add_argument("model", choices=("vae", "mdnrnn", "reward"))
    train.add_argument("--data_dir", help="TFDS data dir the dataset was built in")
    train.add_argument("--dataset", help="name/config (default: dropj_carracing/real, /dream, "
                                         "/preferences_dropj for vae, mdnrnn, reward)")
    train.add_argument("--out", required=True, help="directory for checkpoint.pt, losses.json, losses.png")
    train.add_argument("--steps", type=int, help="total optimizer steps")
    train.add_argument("--batch_size", type=int)
    train.add_argument("--lr", type=float)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--sequence_length", type=int, help="mdnrnn: transitions per window")
    train.set_defaults(run=_train)

    rec = sub.add_parser("record", help="drive with the arrow keys and record RLDS episodes (docs/recording.md)")
    rec.add_argument("--env", default="carracing", choices=("carracing", "chuckc", "chuckccar"))
    rec.add_argument("--out", required=True,
                     help="TFDS data dir; episodes go to OUT/dropj_recording/ENV/1.0.0 (appended)")
    rec.add_argument("--user", required=True, help="driver id stored with every episode")
    rec.add_argument("--episodes", type=int, help="stop after this many saved episodes (default: until Esc)")
    rec.add_argument("--seed", type=int, help="seed of the first track, +1 per episode (default: random)")
    rec.add_argument("--fps", type=float, default=50.0, help="steps per second (the study's 50)")
    rec.add_argument("--max_steps", type=int, default=1000, help="time limit per episode (the study's 1000)")
    rec.add_argument("--window", type=_window_size, default=(1000, 800), help="window size WIDTHxHEIGHT")
    rec.add_argument("--screenshot", help="save the window as PNG at step 100")
    rec.set_defaults(run=_record)

    doc = sub.add_parser("schema-doc", help="print the schema as Markdown (docs/schema.md)")
    doc.set_defaults(run=_schema_doc)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)
    _quiet_tensorflow()
    from dropj_datasets.schema import DataError

    try:
        return args.run(args)
    except DataError as exc:
        print(f"dropj {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
