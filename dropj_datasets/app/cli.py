"""`dropj`: the suite's one command line. It parses arguments and dispatches;
the work lives in the modules it calls (this module is the front of the application
layer, `dropj_datasets.app`: it may import every room, and no room imports it). `dropj build` is TFDS's builder with
our checks, progress and quiet; `tfds build` and `tfds.load` keep working as documented.

    dropj build NAME[/CONFIG] --manual_dir M [--data_dir D]   build from the release files (TFDS's builder)
    dropj list [--data_dir D] [--json]             what is built: dataset, version, items, size, when
    dropj info NAME/CONFIG [--data_dir D] [--json] one config's card: fields, files, licence, citation
    dropj demo [--data_dir D]                      build every config from the embedded sample, load, verify
    dropj export DATASET --data_dir D --out O [--force]   built dataset -> release pickles
    dropj verify DATASET --data_dir D --manual_dir M   prove the dataset equals the source, per episode
    dropj schema-doc                               print docs/schema.md
    dropj train MODEL [NAME/CONFIG] --data_dir D --out O [--steps N] ...
                                                   train a model on a built dataset (resumes from O)
    dropj record --out D --user U [--env E] [--episodes N] [--seed S] [--web [--host H] [--port P] [--max_sessions N]]
                                                   drive with the arrow keys (a window, or the browser);
                                                   record RLDS episodes into D
    dropj annotate NAME/CONFIG --data_dir D --method M --user ID --out OUT [--host H] [--port P]
    dropj annotate --study study.toml --out OUT
                                                   collect preferences and justifications in the browser
    dropj encode NAME/CONFIG --data_dir D --vae V.pt --mdnrnn M.pt   real episodes -> latent z|c|h
    dropj make-queries NAME/CONFIG --data_dir D --vae V.pt --num_queries N --out Q [--seed S]
                       [--start_index K]
                                                   new preference queries in the release's format
    dropj evaluate reward NAME/CONFIG --checkpoints DIR [--note NOTE] --data_dir D [--responses 500:600]
                                                   a reward model's accuracy and loss on human answers
    dropj serve --data_dir D [--host H] [--port P] [--vae CKPT]   browse what is built under D
    dropj show DATASET --data_dir D --episode I --out X.mp4|X.gif   one episode, with its actions, rewards, flags
    dropj stats DATASET --data_dir D --out report.html             a config's statistics on one page
    dropj repair-recording DIR [RESCUED ...]       rebuild a recording's dataset_info.json from its shards

DATASET is NAME/CONFIG[:VERSION] as TFDS names it (e.g. dropj_carracing/real, dropj_carracing/real:1.1.0; the newest
version built when none is given), or a built dataset's version folder; --data_dir defaults as TFDS's does
($TFDS_DATA_DIR, else ~/tensorflow_datasets).
A mistake gets one line `dropj <command>: error: ...` and exit status 2 (a traceback with --debug);
`dropj verify` exits 1 only when the dataset and its source differ.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import NoReturn, Optional, Sequence

from dropj_datasets import schema
from dropj_datasets.app.train import MODELS


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line (the usage is one `--help` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(kind: type, minimum: float, strict: bool = False):
    """An argparse type: a number of `kind` that is >= `minimum` (> with `strict`), said in one line otherwise."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'a whole number' if kind is int else 'a number'}, got {text!r}") from None
        if not (value > minimum if strict else value >= minimum) or value != value or value == float("inf"):
            raise argparse.ArgumentTypeError(
                f"must be {'a positive number' if strict else f'at least {minimum}'}, got {text}")
        return value
    return parse


_positive_int, _non_negative_int, _positive_float = _number(int, 1), _number(int, 0), _number(float, 0, strict=True)


def _dataset_name(text: str) -> str:
    """NAME/CONFIG[:VERSION] of the schema, or a built version folder; a misspelt name gets the closest that
    exists."""
    if os.path.exists(text) or os.sep in text.partition(":")[0].partition("/")[2]:
        return text
    from dropj.converters.store import dataset_dir

    try:
        dataset_dir.parse_name(text)
    except schema.DataError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _dataset_argument(parser: argparse.ArgumentParser, help: str, *, required: bool = True,
                      flag: str = "--dataset") -> None:
    """The dataset of a command: NAME/CONFIG[:VERSION] positional, as in every command; the flag it had before
    (`--dataset`, annotate's `--queries`) still takes it, unlisted. `_merged_dataset` checks one was given."""
    parser.add_argument("dataset", nargs="?", type=_dataset_name, metavar="NAME/CONFIG[:VERSION]", help=help)
    parser.add_argument(flag, dest="dataset_flag", type=_dataset_name, help=argparse.SUPPRESS)
    parser.set_defaults(dataset_required=required)


def _merged_dataset(args: argparse.Namespace) -> None:
    parser = _Parser(prog=f"dropj {args.command}")
    flag = getattr(args, "dataset_flag", None)
    if flag is None:
        if getattr(args, "dataset_required", False) and args.dataset is None:
            parser.error("give the dataset, NAME/CONFIG (e.g. dropj_carracing/real)")
        return
    if args.dataset is not None and args.dataset != flag:
        parser.error(f"two datasets given, {args.dataset} and {flag}")
    args.dataset = flag


def _buildable(text: str) -> str:
    """NAME (every config) or NAME/CONFIG[:VERSION] of a release dataset."""
    name = text.partition(":")[0]
    if "/" not in name and name in schema.DATASETS:
        return text
    return _dataset_name(text)


def _quiet_frameworks(debug: bool) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if debug else "2")
    # TFDS otherwise probes Google Cloud Storage for every builder; there is no network here.
    os.environ.setdefault("NO_GCE_CHECK", "true")
    if not debug:
        logging.getLogger("absl").setLevel(logging.ERROR)
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore")


def _export(args: argparse.Namespace) -> int:
    from dropj.converters.roundtrip.export import export

    export(args.dataset, args.out, data_dir=args.data_dir, force=args.force, progress=True)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from dropj.converters.roundtrip.verify import verify

    reports = verify(args.dataset, args.manual_dir, data_dir=args.data_dir,
                     log=(lambda line: None) if args.quiet else print, progress=True)
    if not reports:
        raise schema.DataError(f"no source file of {args.dataset} found under {args.manual_dir}")
    bad = [r for r in reports if not r.ok]
    for report in reports:
        status = "OK" if report.ok else f"MISMATCH ({len(report.mismatches)} differences)"
        print(f"{report.name}: {schema.counted(report.episodes, 'item')} checked against {report.source}: {status}")
        for line in report.mismatches[:20]:
            print(f"  {line}")
    return 1 if bad else 0


def _demo(args: argparse.Namespace) -> int:
    from dropj_datasets.app import demo

    return demo.run(args.data_dir)


def _schema_doc(args: argparse.Namespace) -> int:

    sys.stdout.write(schema.markdown())
    return 0


def _train(args: argparse.Namespace) -> int:
    from dropj_datasets.app import train

    extra = {k: getattr(args, k) for k in ("sequence_length", "validate_every", "checkpoint_every")
             if getattr(args, k) is not None}
    history = train.train_from_dataset(args.model, args.data_dir, dataset=args.dataset, out_dir=args.out,
                                       steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                                       num_workers=args.num_workers, device=args.device, loader=args.loader,
                                       log=print, **extra)
    if history.step and history.step[-1] > history.start_step:  # it trained (not "nothing to do")
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
    from dropj.converters.recording import controls

    config = controls.RecordConfig(env=args.env, out=args.out, user=str(args.user), episodes=args.episodes,
                                   seed=args.seed, fps=args.fps, max_steps=args.max_steps,
                                   window=args.window, screenshot=args.screenshot, vae=args.vae,
                                   mdnrnn=args.mdnrnn, init_states=args.init_states, dream_of=args.dream_of,
                                   episode_idle_s=args.episode_idle_s)
    if args.web:
        from dropj_datasets.app.web import record as web_record

        web_record.run(config, host=args.host, port=args.port, max_sessions=args.max_sessions,
                       allow_hosts=args.allow_host, idle_s=args.idle_timeout)
    else:
        from dropj.converters.recording import window

        window.run(config)
    return 0


_USER_HELP = ("a whole number as in the release (e.g. 31), or a text id (e.g. p07), the same for dropj record "
              "and dropj annotate; annotate gives a text id an integer from 1000 on, kept in "
              "OUT/dropj_participants/ids.json")


def _user_id(text: str) -> object:
    from dropj.converters.store import participants

    try:
        return participants.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_DATA_DIR_HELP = "the TFDS data dir (default: $TFDS_DATA_DIR, else ~/tensorflow_datasets, as TFDS)"


def _version() -> str:
    import dropj_datasets

    return dropj_datasets.package_version()


_ALLOW_HOST_HELP = ("a host name the page may be opened under, besides the --host address and localhost "
                    "(repeatable; e.g. this machine's name on the lab network)")


def _port(text: str) -> int:
    port = _non_negative_int(text)
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port in 1..65535, got {text!r}")
    return port


def _annotate(args: argparse.Namespace) -> int:
    from dropj_datasets.app.web import annotate

    annotate.run(args.dataset, args.method, args.out, user=args.user, data_dir=args.data_dir,
                 host=args.host, port=args.port, allow_hosts=args.allow_host, idle_s=args.idle_timeout,
                 study=args.study)
    return 0


def _encode(args: argparse.Namespace) -> int:
    from dropj_datasets.app import models_io

    models_io.encode(args.dataset, args.vae, args.mdnrnn, data_dir=args.data_dir, out=args.out, progress=True)
    return 0


def _make_queries(args: argparse.Namespace) -> int:
    from dropj_datasets.app import models_io

    models_io.make_queries(args.dataset, args.vae, args.num_queries, args.out, data_dir=args.data_dir,
                              seed=args.seed, start_index=args.start_index)
    return 0


def _evaluate_reward(args: argparse.Namespace) -> int:
    from dropj_datasets.app import evaluate

    evaluate.evaluate_reward(args.checkpoints, args.dataset, note=args.note, data_dir=args.data_dir,
                             responses=args.responses, out=args.out)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from dropj_datasets.app.web import serve

    from dropj.converters.store import dataset_dir

    serve.run(args.data_dir or str(dataset_dir.default_data_dir()), host=args.host, port=args.port, vae=args.vae,
              allow_hosts=args.allow_host)
    return 0


def _show(args: argparse.Namespace) -> int:
    from dropj_datasets.app import views

    if not args.out.lower().endswith((".mp4", ".gif")):
        raise ValueError(f"{args.out}: --out must end in .mp4 or .gif")
    episode = views.load_episode(views.open_built(args.dataset, args.data_dir), args.episode)
    if args.fps is not None:
        if args.fps > views.MAX_PLAYBACK_FPS:
            raise ValueError(f"--fps {args.fps:g}: at most {views.MAX_PLAYBACK_FPS:g} steps/s")
        episode = dataclasses.replace(episode, fps=args.fps)
    path = views.write_animation(episode, args.out)
    print(f"wrote {path}: {len(episode.frames)} steps at {episode.fps:.3g} steps/s")
    return 0


def _stats(args: argparse.Namespace) -> int:
    from dropj.converters.store.durable import write_atomically
    from dropj_datasets.app import views

    built = views.open_built(args.dataset, args.data_dir)
    page = views.report(built, views.statistics(built)).encode()
    write_atomically(Path(args.out), lambda f: f.write(page), force=True)
    print(f"wrote {args.out} ({len(page) / 1e3:.0f} kB)")
    return 0


def _build(args: argparse.Namespace) -> int:
    from dropj_datasets.app import catalog

    catalog.build(args.dataset, args.manual_dir, args.data_dir, beam_pipeline_options=args.beam_pipeline_options)
    return 0


def _list(args: argparse.Namespace) -> int:
    import json

    from dropj.converters.store import dataset_dir
    from dropj_datasets.app import catalog

    root = args.data_dir or str(dataset_dir.default_data_dir())
    # TFDS's default folder not made yet: nothing is built (a --data_dir that does not exist is a mistake)
    entries = [] if args.data_dir is None and not os.path.exists(root) else dataset_dir.catalog(root)
    if args.json:
        print(json.dumps(entries, indent=1))
    else:
        print("\n".join(catalog.list_lines(entries, root)))
    return 0


def _info(args: argparse.Namespace) -> int:
    import json

    from dropj_datasets.app import catalog

    facts = catalog.card(args.dataset, args.data_dir)
    print(json.dumps(facts, indent=1) if args.json else "\n".join(catalog.card_lines(facts)))
    return 0


def _repair_recording(args: argparse.Namespace) -> int:
    from dropj.converters.release import kinds

    print(kinds.repair(args.directory, args.rescued))
    return 0


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="dropj", description=__doc__.split("\n\n")[0],
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", help="show tracebacks and the frameworks' logs")
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    build = sub.add_parser("build", help="build a config (or every config of a dataset) from the release files, "
                                         "with TFDS's builder (docs/build_and_load.md)")
    build.add_argument("dataset", type=_buildable, metavar="NAME[/CONFIG][:VERSION]",
                       help="e.g. dropj_carracing/real, or dropj_carracing for every config whose files are there")
    build.add_argument("--manual_dir", help="the folder holding the release's .zip or .pkl files, anywhere below "
                                            "it (default: DATA_DIR/downloads/manual, as TFDS)")
    build.add_argument("--data_dir", help=_DATA_DIR_HELP)
    build.add_argument("--beam_pipeline_options", metavar="OPTIONS",
                       help="build on Apache Beam, options as tfds build takes them: "
                            "runner=DirectRunner,direct_num_workers=2")
    build.set_defaults(run=_build)

    listing = sub.add_parser("list", help="what is built under a data dir: dataset, version, items, size, when")
    listing.add_argument("--data_dir", help=_DATA_DIR_HELP)
    listing.add_argument("--json", action="store_true", help="a JSON list, for scripts")
    listing.set_defaults(run=_list)

    info = sub.add_parser("info", help="one config's card: what it holds, its fields, files, licence, citation")
    info.add_argument("dataset", type=_dataset_name, metavar="NAME/CONFIG[:VERSION]")
    info.add_argument("--data_dir", help=_DATA_DIR_HELP)
    info.add_argument("--json", action="store_true", help="a JSON object, for scripts")
    info.set_defaults(run=_info)

    demo = sub.add_parser("demo", help="build, load and verify every config from the embedded sample")
    demo.add_argument("--data_dir", help="where to build (default: a fresh temporary directory)")
    demo.set_defaults(run=_demo)

    export = sub.add_parser("export", help="write a built dataset back as release pickles")
    export.add_argument("dataset", type=_dataset_name, help="name/config, or a built dataset's version folder")
    export.add_argument("--data_dir", help=_DATA_DIR_HELP)
    export.add_argument("--out", required=True, help="directory for the pickles")
    export.add_argument("--force", action="store_true", help="replace files of an earlier export in --out")
    export.set_defaults(run=_export)

    verify = sub.add_parser("verify", help="check a built dataset against its source files, per episode")
    verify.add_argument("dataset", type=_dataset_name, help="name/config, or a built dataset's version folder")
    verify.add_argument("--data_dir", help=_DATA_DIR_HELP)
    verify.add_argument("--manual_dir", required=True, help="directory holding the release files")
    verify.add_argument("-q", "--quiet", action="store_true", help="only the summary, not a line per episode")
    verify.set_defaults(run=_verify)


    train = sub.add_parser("train", help="train a model on a built dataset (resumes from OUT/checkpoint.pt)")
    train.add_argument("model", choices=tuple(MODELS),
                       help="; ".join(f"{m.name} trains on {m.trains_on}" for m in MODELS.values()))
    train.add_argument("--data_dir", help=_DATA_DIR_HELP)
    _dataset_argument(train, "the built dataset to train on (default: " + ", ".join(
        f"{m.dataset} for {m.name}" for m in MODELS.values()) + ")", required=False)
    train.add_argument("--out", required=True, help="directory for checkpoint.pt, losses.json, losses.png")
    train.add_argument("--steps", type=_positive_int, help="total optimizer steps")
    train.add_argument("--batch_size", type=_positive_int)
    train.add_argument("--lr", type=_positive_float)
    train.add_argument("--seed", type=_non_negative_int, default=0)
    train.add_argument("--sequence_length", type=_positive_int, help="mdnrnn: transitions per window")
    train.add_argument("--validate_every", type=_positive_int, help="steps between validations (and at the end)")
    train.add_argument("--checkpoint_every", type=_positive_int,
                       help="steps between checkpoints (also at the end and on Ctrl-C)")
    train.add_argument("--num_workers", type=_non_negative_int,
                       help="DataLoader worker processes decoding batches (default: the usable CPUs, at most 4; "
                            "0 decodes in the training process)")
    train.add_argument("--device", help="torch device: cpu, cuda, cuda:1, mps (default: cuda when available, else cpu)")
    train.add_argument("--loader", choices=("map", "tf.data"), default="map",
                       help="map: read without TensorFlow (EpisodeSource, default); tf.data: through TFDS and rlds")
    train.set_defaults(run=_train)

    rec = sub.add_parser("record", help="drive with the arrow keys and record RLDS episodes (docs/recording.md)")
    rec.add_argument("--env", default=schema.CARRACING.name, choices=(*schema.ENVS, "dream"),
                     help="an environment, or 'dream': inside the world model of --dream_of (needs --vae, --mdnrnn)")
    rec.add_argument("--vae", help="env dream: the VAE checkpoint whose decodes the driver sees")
    rec.add_argument("--mdnrnn", help="env dream: the MDN-RNN checkpoint of the world model")
    rec.add_argument("--init_states", help="env dream: a default_init_obs*.pkl start-state file (default: zeros)")
    rec.add_argument("--dream_of", default=schema.CARRACING.name, choices=tuple(schema.ENVS),
                     help="env dream: which environment's world model")
    rec.add_argument("--out", required=True,
                     help="TFDS data dir; episodes go to OUT/dropj_recording/ENV/1.0.0 (appended)")
    rec.add_argument("--user", required=True, type=_user_id,
                     help="driver id stored with every episode: " + _USER_HELP)
    rec.add_argument("--episodes", type=_positive_int, help="stop after this many saved episodes (default: until Esc)")
    rec.add_argument("--seed", type=_non_negative_int,
                     help="seed of the first track, +1 per episode (default: random)")
    rec.add_argument("--fps", type=_positive_float, default=50.0, help="steps per second (the study's 50)")
    rec.add_argument("--max_steps", type=_positive_int, default=1000, help="time limit per episode (the study's 1000)")
    rec.add_argument("--window", type=_window_size, default=(1000, 800), help="window size WIDTHxHEIGHT")
    rec.add_argument("--screenshot", help="save the window as PNG at step 100")
    rec.add_argument("--web", action="store_true",
                     help="drive in the browser: serve the page at http://HOST:PORT/, one session per tab "
                          "(--user is the default driver id; a tab may give ?user=ID)")
    rec.add_argument("--host", default="127.0.0.1", help="--web: address to listen on (not loopback: a token)")
    rec.add_argument("--port", type=_port, default=8000, help="--web: port")
    rec.add_argument("--max_sessions", type=_positive_int,
                     help="--web: participants driving at once (default: 1.5 per usable core, so each keeps "
                          "50 steps/s; docs/benchmarks.md)")
    rec.add_argument("--allow_host", action="append", default=[], metavar="NAME",
                     help="--web: " + _ALLOW_HOST_HELP)
    rec.add_argument("--idle_timeout", type=_positive_float, default=120.0, metavar="SECONDS",
                     help="--web: a session with no key pressed for this long ends and gives its place back "
                          "(default 120)")
    rec.add_argument("--episode_idle_s", type=_positive_float, default=30.0, metavar="SECONDS",
                     help="an episode with no key down for this long is dropped, not saved, and the next "
                          "track waits for its first key (default 30)")
    rec.set_defaults(run=_record)

    ann = sub.add_parser("annotate", help="collect preferences and justifications in the browser (docs/annotate.md)")
    ann.add_argument("--study", metavar="STUDY.toml",
                     help="a study file: consent, instructions, practice, the queries, method and order "
                          "(docs/study.toml); without it, --queries, --method and --user are the quick path")
    _dataset_argument(ann, "a built queries dataset (e.g. dropj_carracing/queries) or its directory; with "
                           "--study, the study file's", required=False, flag="--queries")
    ann.add_argument("--data_dir", help="TFDS data dir the queries were built in (overrides the study file's)")
    ann.add_argument("--method", choices=tuple(schema.ANNOTATIONS),
                     help="the study's questions: drop, drope, dropj or mjust")
    ann.add_argument("--user", type=_user_id,
                     help="annotator id (the release's files are named responses_user{ID}_...): " + _USER_HELP
                          + "; with --study, the id of a link without ?user=")
    ann.add_argument("--out", required=True, help="responses go to OUT/dropj_annotations/METHOD/1.0.0 (appended)")
    ann.add_argument("--host", default="127.0.0.1", help="address to bind (another host needs the printed token)")
    ann.add_argument("--port", type=_port, default=8000)
    ann.add_argument("--allow_host", action="append", default=[], metavar="NAME", help=_ALLOW_HOST_HELP)
    ann.add_argument("--idle_timeout", type=_positive_float, default=3600.0, metavar="SECONDS",
                     help="a session (browser tab) unused this long is forgotten; its page asks for a reload "
                          "(default 3600)")
    ann.set_defaults(run=_annotate)

    enc = sub.add_parser("encode", help="real episodes -> latent episodes z|c|h with a VAE and an MDN-RNN")
    _dataset_argument(enc, "a built real config, e.g. dropj_carracing/real")
    enc.add_argument("--data_dir", help=_DATA_DIR_HELP)
    enc.add_argument("--vae", required=True, help="the VAE checkpoint ({'model_state', ...}) of its environment")
    enc.add_argument("--mdnrnn", required=True, help="the MDN-RNN checkpoint of its environment")
    enc.add_argument("--out", help="writes OUT/dropj_encoded/ENV/1.0.0 (default: --data_dir)")
    enc.set_defaults(run=_encode)

    mq = sub.add_parser("make-queries", help="new preference queries (data.pkl and videos) from latent episodes")
    _dataset_argument(mq, "a built dream config or dropj_encoded/ENV")
    mq.add_argument("--data_dir", help=_DATA_DIR_HELP)
    mq.add_argument("--vae", required=True, help="the VAE checkpoint that decodes the videos' frames")
    mq.add_argument("--num_queries", type=_positive_int, required=True)
    mq.add_argument("--out", required=True, help="writes OUT/queries_s20*/data.pkl and {i}.mp4")
    mq.add_argument("--seed", type=_non_negative_int, default=0)
    mq.add_argument("--start_index", type=_non_negative_int, default=0,
                    help="number the new queries from here and add them to an existing data.pkl")
    mq.set_defaults(run=_make_queries)

    evaluate = sub.add_parser("evaluate", help="evaluate a model against human answers (docs/training.md)")
    what = evaluate.add_subparsers(dest="what", required=True, parser_class=_Parser)
    ev = what.add_parser("reward", help="a preference reward model: accuracy, loss and a per-label table")
    ev.add_argument("--checkpoints", required=True,
                    help="the release's pref_reward_models folder (with --note), or a `dropj train reward` run")
    ev.add_argument("--note", help="the release's checkpoint note, e.g. GUI_s20_just_resp500")
    _dataset_argument(ev, "a built preferences or annotations config")
    ev.add_argument("--data_dir", help=_DATA_DIR_HELP)
    ev.add_argument("--responses", default="0:", help="response indices START:STOP (the paper tests on 500:600)")
    ev.add_argument("--out", help="also write the results as JSON here")
    ev.set_defaults(run=_evaluate_reward)

    serve = sub.add_parser("serve", help="browse what is built under a data dir, in the browser (docs/browse.md)")
    serve.add_argument("--data_dir", help=_DATA_DIR_HELP)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (another host needs the printed token)")
    serve.add_argument("--port", type=_port, default=8000)
    serve.add_argument("--allow_host", action="append", default=[], metavar="NAME", help=_ALLOW_HOST_HELP)
    serve.add_argument("--vae", help="a VAE checkpoint of the environment: show latent episodes as decoded frames")
    serve.set_defaults(run=_serve)

    show = sub.add_parser("show", help="one episode as .mp4 or .gif, with its actions, rewards and flags")
    show.add_argument("dataset", type=_dataset_name, help="name/config, or a built dataset's version folder")
    show.add_argument("--data_dir", help=_DATA_DIR_HELP)
    show.add_argument("--episode", type=_non_negative_int, default=0, help="index in stored order (default 0)")
    show.add_argument("--out", required=True, help="X.mp4 or X.gif")
    show.add_argument("--fps", type=_positive_float,
                      help="steps per second to play at (default: the episode's own pace, from its wall times; "
                           "a .gif shows at most 50)")
    show.set_defaults(run=_show)

    stats = sub.add_parser("stats", help="a config's statistics as one self-contained HTML page")
    stats.add_argument("dataset", type=_dataset_name, help="name/config, or a built dataset's version folder")
    stats.add_argument("--data_dir", help=_DATA_DIR_HELP)
    stats.add_argument("--out", required=True, help="report.html")
    stats.set_defaults(run=_stats)

    repair = sub.add_parser("repair-recording",
                            help="rebuild a recording's dataset_info.json from the shards on disk")
    repair.add_argument("directory", help="the recording's version folder, OUT/dropj_recording/ENV/1.0.0")
    repair.add_argument("rescued", nargs="*", help="rescue files (or folders of them) kept elsewhere than "
                        "DIRECTORY/rescued/, as the recorder's message names them")
    repair.set_defaults(run=_repair_recording)

    doc = sub.add_parser("schema-doc", help="print the schema as Markdown (docs/schema.md)")
    doc.set_defaults(run=_schema_doc)
    return p


# The exceptions of the rooms that mean "the input, the arguments or the folder is wrong" (beside
# ValueError, KeyError and OSError): one plain line, never "unexpected". Each is named by the module
# that DEFINES it: `dropj.converters.recording.store` re-exports RecordingError, but `annotate` (and
# `repair-recording` of annotations) never load it, so naming it there labelled their refusals unexpected.
USER_ERRORS = (("dropj.models.checkpoints", "CheckpointError"),
               ("dropj.converters.store.shards", "RecordingError"),
               ("dropj.converters.store.durable", "Busy"))


def _user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean: the input or the arguments are wrong (one line, exit 2). A module not
    loaded cannot have raised its exception, so only loaded ones are looked up (importing would cost
    seconds of TensorFlow on every error)."""

    errors: list[type[BaseException]] = [schema.DataError, ValueError, KeyError, OSError]
    for module, name in USER_ERRORS:
        loaded = sys.modules.get(module)
        if loaded is not None:
            errors.append(getattr(loaded, name))
    return tuple(errors)


def _one_line(exc: BaseException) -> str:
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    if isinstance(exc, OSError) and exc.filename:
        text = f"{exc.filename}: {exc.strerror}"
    return text or type(exc).__name__  # several problems of one input: one indented line each


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)
    _merged_dataset(args)
    _quiet_frameworks(args.debug)
    prog = f"dropj {args.command}"
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - every failure is reported in one line
        if args.debug:
            raise
        known = isinstance(exc, _user_errors())
        hint = "" if known else f" ({type(exc).__name__}, unexpected: run with --debug for the traceback)"
        print(f"{prog}: error: {_one_line(exc)}{hint}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
