"""The main job (`make demo` / `dropj demo`): build every config from the
embedded sample with TFDS, load each with `tfds.load`, summarise, and verify
that exporting it gives back the source files exactly."""

from __future__ import annotations

import contextlib
import io
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np


def dummy_dir(dataset: str) -> Path:
    import dropj_datasets

    return Path(dropj_datasets.__file__).parent / dataset / "dummy_data"


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def summarise(dataset: str, config: str, data_dir: str, extra_last_step: bool = True) -> dict:
    """Episodes, steps, returns and sizes of a built config, read through `tfds.load`."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    from dropj_datasets import schema

    ds, info = tfds.load(f"{dataset}/{config}", data_dir=data_dir, split="train", with_info=True)
    ds = ds.map(lambda ep: ep[schema.STEPS].reduce(
        (tf.constant(0, tf.int64), tf.constant(0, tf.int64), tf.constant(False)),
        lambda acc, step: (acc[0] + 1, acc[1] + tf.cast(step[schema.REWARD], tf.int64),
                           acc[2] or step[schema.IS_TERMINAL])))
    lengths, returns, terminal = [], [], 0
    for steps, ret, term in tfds.as_numpy(ds):
        lengths.append(int(steps) - extra_last_step)  # transitions; an extra last step holds s_T
        returns.append(int(ret))
        terminal += bool(term)
    return {"episodes": len(lengths), "transitions": int(np.sum(lengths)), "terminal": terminal,
            "mean_return": float(np.mean(returns)) if returns else 0.0,
            "dataset_bytes": _dir_bytes(Path(info.data_dir))}


def summarise_preferences(dataset: str, config: str, data_dir: str) -> dict:
    """Examples, skipped queries, and counts per answer pattern and per label, via `tfds.load`."""
    import collections

    import tensorflow_datasets as tfds

    from dropj_datasets import schema

    ds = tfds.load(f"{dataset}/{config}", data_dir=data_dir, split="train")
    answers: collections.Counter = collections.Counter()
    labels: collections.Counter = collections.Counter()
    skipped = 0
    for example in tfds.as_numpy(ds):
        response = example[schema.RESPONSE]
        if response[schema.SKIPPED]:
            skipped += 1
            continue
        answers["/".join(a.decode() for a in response[schema.ANSWERS][schema.ANSWER])] += 1
        labels[round(float(example[schema.LABEL]), 4)] += 1
    return {"examples": skipped + sum(answers.values()), "skipped": skipped,
            "answers": dict(sorted(answers.items())), "labels": dict(sorted(labels.items()))}


def _build(tfds, dataset: str, config: str, manual: Path, data_dir: str) -> float:
    start = time.perf_counter()
    builder = tfds.builder(f"{dataset}/{config}", data_dir=data_dir)
    with contextlib.redirect_stdout(io.StringIO()):  # TFDS's own chatter
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
    return time.perf_counter() - start


def _verified(dataset: str, config: str, manual: Path, data_dir: str) -> tuple[bool, str]:
    from dropj.converters import to_legacy

    reports = to_legacy.verify(f"{dataset}/{config}", manual, data_dir=data_dir, log=lambda line: None)
    ok = bool(reports) and all(r.ok for r in reports)
    checked = sum(r.episodes for r in reports)
    return ok, f"{'exact' if ok else 'MISMATCH'} ({len(reports)} files, {checked} items)"


def _train_briefly(data_dir: str, steps: int = 5) -> None:
    """Train each model a few steps (batch 2) on the sample configs just built; one line per model."""
    from dropj.loaders import training_data

    print(f"\nTraining each model for {steps} steps (batch 2) on the sample\n")
    out = tempfile.mkdtemp(prefix="dropj-demo-train-")
    for kind, extra in (("vae", {}), ("mdnrnn", {"sequence_length": 8}), ("reward", {})):
        start = time.perf_counter()
        history = training_data.train_from_dataset(kind, data_dir, out_dir=f"{out}/{kind}", steps=steps,
                                                   batch_size=2, progress=False, validate_every=steps, **extra)
        print(f"{kind:8} {training_data.DEFAULT_DATASETS[kind]:36} train loss {history.train_loss[0]:10.4g} -> "
              f"{history.train_loss[-1]:10.4g}  in {time.perf_counter() - start:5.1f} s")


def _record_briefly(data_dir: str, steps: int = 50) -> None:
    """Record one short scripted episode per environment with the EnvLogger recorder, reload and export it."""
    import itertools

    import tensorflow_datasets as tfds

    from dropj.converters import record, to_legacy

    print(f"\nRecording one {steps}-step scripted episode per environment (dropj record's recorder, no window)\n")
    out = Path(data_dir) / "recordings"
    for env_name in record.ENV_IDS:
        recorder = record.open_recorder(env_name, out, "demo", seeds=itertools.count(3),
                                        gym_env=record.make_env(env_name, steps))
        start = time.perf_counter()
        timestep = recorder.logger.reset()
        while not timestep.last():  # a keyboard-like script: gas, and a left burst
            steer = -1.0 if 20 <= recorder.adapter.episode_steps < 26 else 0.0
            timestep = recorder.logger.step(np.array([steer, 1.0, 0.0]))
        seconds = time.perf_counter() - start
        recorder.close()
        directory = record.recording_dir(out, env_name)
        builder = tfds.builder_from_directory(str(directory))
        [episode] = tfds.as_numpy(builder.as_dataset(split="train"))
        frames = len(list(episode["steps"]))
        [path] = to_legacy.export(str(directory), Path(data_dir) / "recordings-legacy", log=lambda line: None)
        print(f"{env_name:10} {frames} steps (shape {builder.info.features['steps']['observation'].shape}), "
              f"return {recorder.adapter.episode_return:+d}, {steps / seconds:5.0f} steps/s with the write -> "
              f"{directory.relative_to(data_dir)}; exported {path.name}")


def run(data_dir: Optional[str] = None) -> int:
    import tensorflow_datasets as tfds

    import dropj_datasets  # noqa: F401  (registers the builders)
    from dropj.converters import sources
    from dropj_datasets import schema

    tfds.disable_progress_bar()
    data_dir = data_dir or tempfile.mkdtemp(prefix="dropj-demo-")
    print(f"Building every config from the embedded sample into {data_dir}\n")
    header = f"{'dataset/config':36} {'episodes':>8} {'transitions':>11} {'terminal':>8} {'return':>7} " \
             f"{'source MB':>9} {'RLDS MB':>8} {'ratio':>6} {'build s':>7}  verify"
    print(header)
    print("-" * len(header))
    failures = 0
    preference_configs, query_configs = [], []
    for dataset, configs in schema.DATASETS.items():
        manual = dummy_dir(dataset)
        found = sources.index(manual)
        for config, spec in configs.items():
            if isinstance(spec, schema.FeedbackSpec):
                preference_configs.append((dataset, config, manual))
                continue
            if isinstance(spec, schema.QuerySpec):
                query_configs.append((dataset, config, manual))
                continue
            seconds = _build(tfds, dataset, config, manual, data_dir)
            summary = summarise(dataset, config, data_dir, extra_last_step=isinstance(spec, schema.DatasetSpec))
            source_bytes = sum(ref.size for ref in sources.locate(manual, spec.all_sources, required=(),
                                                                  found=found).values())
            ok, verdict = _verified(dataset, config, manual, data_dir)
            failures += not ok
            print(f"{dataset + '/' + config:36} {summary['episodes']:8d} {summary['transitions']:11d} "
                  f"{summary['terminal']:8d} {summary['mean_return']:7.1f} {source_bytes / 1e6:9.2f} "
                  f"{summary['dataset_bytes'] / 1e6:8.2f} {summary['dataset_bytes'] / source_bytes:6.3f} "
                  f"{seconds:7.1f}  {verdict}")
    print("\nPreference queries (two 20-step clips each, and the video shown)\n")
    for dataset, config, manual in query_configs:
        seconds = _build(tfds, dataset, config, manual, data_dir)
        ds = tfds.load(f"{dataset}/{config}", data_dir=data_dir, split="train")
        videos = [len(example[schema.VIDEO]) for example in tfds.as_numpy(ds)]
        ok, verdict = _verified(dataset, config, manual, data_dir)
        failures += not ok
        print(f"{dataset + '/' + config:36} {len(videos)} queries, {sum(videos) / 1e3:.0f} kB of mp4, "
              f"built in {seconds:.2f} s, {verdict}")
    print("\nHuman feedback (one example per response; labels by the paper's rule for each method)\n")
    for dataset, config, manual in preference_configs:
        seconds = _build(tfds, dataset, config, manual, data_dir)
        summary = summarise_preferences(dataset, config, data_dir)
        ok, verdict = _verified(dataset, config, manual, data_dir)
        failures += not ok
        answers = ", ".join(f"{k}: {v}" for k, v in summary["answers"].items())
        labels = ", ".join(f"{k:g}: {v}" for k, v in summary["labels"].items())
        print(f"{dataset + '/' + config:36} {summary['examples']} examples, {summary['skipped']} skipped, "
              f"built in {seconds:.2f} s, {verdict}\n    answers  {answers}\n    labels   {labels}")
    _train_briefly(data_dir)
    _record_briefly(data_dir)
    print("\nLoad any of them with:\n  import dropj_datasets, tensorflow_datasets as tfds\n"
          f"  tfds.load('dropj_carracing/real', data_dir='{data_dir}')")
    return 1 if failures else 0
