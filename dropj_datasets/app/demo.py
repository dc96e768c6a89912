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

from dropj_datasets import schema


def dummy_dir(dataset: str) -> Path:
    import dropj_datasets

    return Path(dropj_datasets.__file__).parent / dataset / "dummy_data"


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def summarise(dataset: str, data_dir: str) -> tuple[int, str]:
    """(bytes on disk, the kind's one-line summary) of a built config, read in source order."""
    from dropj.converters.release import kinds
    from dropj.converters.roundtrip.built import BuiltDataset

    built = BuiltDataset.open(dataset, data_dir)
    return _dir_bytes(built.directory), kinds.converter(built.spec).summarise(built.spec, built.examples())


def _build(tfds, dataset: str, config: str, manual: Path, data_dir: str) -> float:
    """Builds a config (0.0 when it is built already) and returns the seconds taken."""
    start = time.perf_counter()
    builder = tfds.builder(f"{dataset}/{config}", data_dir=data_dir)
    if builder.is_prepared():
        return 0.0
    with contextlib.redirect_stdout(io.StringIO()):  # TFDS's own chatter
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
    return time.perf_counter() - start


def _verified(dataset: str, config: str, manual: Path, data_dir: str) -> tuple[bool, str]:
    from dropj.converters.roundtrip.verify import verify

    reports = verify(f"{dataset}/{config}", manual, data_dir=data_dir, log=lambda line: None)
    ok = bool(reports) and all(r.ok for r in reports)
    checked = sum(r.episodes for r in reports)
    files, items = schema.counted(len(reports), "file"), schema.counted(checked, "item")
    return ok, f"{'exact' if ok else 'MISMATCH'} ({files}, {items})"


def _train_briefly(data_dir: str, out: str, steps: int = 5) -> None:
    """Train each model a few steps (batch 2) on the sample configs just built; one line per model."""
    from dropj_datasets.app import train

    print(f"\nTraining each model for {steps} steps (batch 2) on the sample\n")
    for model, extra in (("vae", {}), ("mdnrnn", {"sequence_length": 8}), ("reward", {})):
        start = time.perf_counter()
        history = train.train_from_dataset(model, data_dir, out_dir=f"{out}/{model}", steps=steps, num_workers=0,
                                           batch_size=2, progress=False, validate_every=steps, **extra)
        print(f"{model:8} {train.MODELS[model].dataset:36} train loss {history.train_loss[0]:10.4g} -> "
              f"{history.train_loss[-1]:10.4g}  in {time.perf_counter() - start:5.1f} s")


def _record_briefly(scratch: str, steps: int = 50) -> None:
    """Record one short scripted episode per environment with the EnvLogger recorder, reload and export it."""
    import itertools

    import tensorflow_datasets as tfds

    from dropj.converters.recording import capture as record
    from dropj.converters.roundtrip.export import export

    print(f"\nRecording one {steps}-step scripted episode per environment (dropj record's recorder, no window)\n")
    out = Path(scratch) / "recordings"
    for env_name in schema.ENVS:
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
        [path] = export(str(directory), Path(scratch) / "recordings-legacy", log=lambda line: None)
        print(f"{env_name:10} {frames} steps (shape {builder.info.features['steps']['observation'].shape}), "
              f"return {recorder.adapter.episode_return:+d}, {steps / seconds:5.0f} steps/s with the write -> "
              f"a recording directory; exported {path.name}")


def run(data_dir: Optional[str] = None) -> int:
    import tensorflow_datasets as tfds

    import dropj_datasets  # noqa: F401  (registers the builders)
    from dropj.converters.release import sources

    tfds.disable_progress_bar()
    temporary = data_dir is None
    data_dir = data_dir or tempfile.mkdtemp(prefix="dropj-demo-")
    print(f"Building every config from the embedded sample into {data_dir}"
          + (" (a temporary directory: pass --data_dir to keep the datasets)" if temporary else "")
          + "; configs built there before are reused\n")
    header = f"{'dataset/config':42} {'source MB':>9} {'RLDS MB':>8} {'ratio':>6} {'build s':>7}  verify"
    print(header)
    print("-" * len(header))
    failures = 0
    for dataset, configs in schema.DATASETS.items():
        manual = dummy_dir(dataset)
        found = sources.index(manual)
        for config, spec in configs.items():
            name = f"{dataset}/{config}"
            seconds = _build(tfds, dataset, config, manual, data_dir)
            dataset_bytes, summary = summarise(name, data_dir)
            source_bytes = sum(ref.size for ref in sources.locate(manual, spec.all_sources, required=(),
                                                                  found=found).values())
            ok, verdict = _verified(dataset, config, manual, data_dir)
            failures += not ok
            print(f"{name:42} {source_bytes / 1e6:9.2f} {dataset_bytes / 1e6:8.2f} "
                  f"{dataset_bytes / source_bytes:6.3f} {seconds:7.1f}  {verdict}\n    {summary}")
    with tempfile.TemporaryDirectory(prefix="dropj-demo-scratch-") as scratch:  # checkpoints and recordings
        _train_briefly(data_dir, scratch)
        _record_briefly(scratch)
    print("\nLoad any of them with:\n  import dropj_datasets, tensorflow_datasets as tfds\n"
          f"  tfds.load('dropj_carracing/real', data_dir='{data_dir}')")
    return 1 if failures else 0
