"""What `dropj serve`, `dropj show` and `dropj stats` show of a built dataset: statistics, plots and episode frames.

    built = open_built('dropj_carracing/real', 'demo_data')
    stats = statistics(built)                      # counts, lengths, returns, flags, actions, answers, labels
    html = report(built, stats)                    # one self-contained page, plots as inline SVG
    episode = load_episode(built, 0)               # frames (image or latent heat maps, each made when asked for),
                                                   # actions, rewards, flags
    write_animation(episode, 'episode0.gif')       # or .mp4, at the recorded pace, with overlays

A directory is checked as `dropj` checks one before anything reads it (`open_built`). Statistics come from the
numbers of the examples, read without TensorFlow and kept beside the index (`dropj.loaders.statistics`);
episodes and items through TFDS (`BuiltDataset`, opened when first needed).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import html
import io
import math
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from dropj_datasets import schema

FRAME_PACE = 50.0  # steps per second of the release's environments (FPS 50)
MAX_PLAYBACK_FPS = 1000.0  # `dropj show --fps`: beyond this a video player shows nothing a person could follow


@dataclasses.dataclass
class Built:
    """A built config, checked (`dataset_dir.check_shards`, no TensorFlow), with TFDS's reader of it
    (`roundtrip.built.BuiltDataset`: `builder`, `examples()`, `episodes()`) opened when first asked for: the
    statistics and their page read the shards without TensorFlow, so `dropj stats` never imports it."""

    dataset: str
    data_dir: Optional[str]
    spec: schema.Spec
    directory: Path
    name: str  # the builder's name and config, as TFDS names them (dataset_info.json)
    config: str
    count: int  # items of the train split

    @functools.cached_property
    def tfds(self) -> Any:
        from dropj.converters.roundtrip.built import BuiltDataset

        return BuiltDataset.open(self.dataset, self.data_dir)

    @property
    def builder(self) -> Any:
        return self.tfds.builder

    def examples(self):
        return self.tfds.examples()

    def episodes(self):
        return self.tfds.episodes()


def open_built(dataset: str, data_dir: Optional[str] = None) -> Built:
    """'name/config' under `data_dir` (its newest built version) or a built version folder, checked."""
    from dropj.converters.store import dataset_dir

    directory = dataset_dir.locate(dataset, data_dir)
    name, spec, shards = dataset_dir.check_shards(directory)
    info_file = directory / dataset_dir.DATASET_INFO
    info = dataset_dir.read_json(info_file, dataset_dir.JSON_LIMITS[dataset_dir.DATASET_INFO])
    return Built(dataset, data_dir, spec, directory, name, str(info.get("configName") or spec.config),
                 sum(count for _, count in shards))


def text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


# --- statistics -----------------------------------------------------------------------------------------

def statistics(built: Any) -> dict:
    """Counts and distributions of a built config, by how its kind is shown (episodes, queries, responses):
    `dropj.loaders.statistics` over the TF-free reader, kept beside the index after the first time."""
    from dropj.loaders import statistics as figures
    from dropj.loaders.episode_source import EpisodeSource

    with EpisodeSource(built.directory) as source:
        stats = figures.of(source)
        if isinstance(built.spec, schema.AnnotationSpec):  # ours: per participant and agreement too
            stats["agreement"] = agreement(built, source)
        return stats


def agreement(built: Any, source: Any) -> dict:
    """`dropj.loaders.agreement.of` an annotation directory, with the method's questions and what the
    participants' records beside it say (`OUT/dropj_participants/METHOD/`, where `dropj annotate` wrote them)."""
    from dropj.converters.feedback import annotations, study
    from dropj.loaders import agreement as figures

    questions = study.Study(built.spec).questions
    records = {}
    folder = annotations.participant_path(built.directory.parent.parent.parent, built.spec.config, 0).parent
    if built.directory.parent.parent.name == schema.ANNOTATION_DATASET and folder.is_dir():
        for path in sorted(folder.glob("user*.json"))[:10 * figures.MAX_PARTICIPANTS]:
            if path.stem[4:].isdigit():
                try:
                    record = annotations.read_participant(path)
                except schema.DataError:
                    continue
                if record is not None:
                    records[int(path.stem[4:])] = {"of": len(record["order"]), **{
                        k: record[k] for k in ("consented_at", "completed_at") if k in record}}
    return figures.of(source, questions=[(q.text, q.options) for q in questions], participants=records)


def statistics_through_tfds(built: Any) -> dict:
    """The same figures from every example as TFDS decodes it, frames included: the reference the TF-free
    ones are tested and benchmarked against (minutes on a 600-episode config)."""
    from dropj.loaders import statistics as figures

    return figures.accumulate(built.spec, built.examples())


# --- plots (inline SVG, no plotting library) ----------------------------------------------------------

def svg_bars(counts: dict, title: str, width: int = 420, height: int = 180) -> str:
    """A bar chart of {label: count}."""
    items = list(counts.items())[:40]
    top = max([v for _, v in items] + [1])
    bar = (width - 40) / max(len(items), 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 40}" role="img">',
             f'<title>{html.escape(title)}</title>',
             f'<text x="4" y="14" font-size="13" font-weight="bold">{html.escape(title)}</text>']
    for k, (label, value) in enumerate(items):
        h = (height - 30) * value / top
        x = 30 + k * bar
        parts.append(f'<rect x="{x + 1:.1f}" y="{height - h:.1f}" width="{max(bar - 2, 1):.1f}" height="{h:.1f}" '
                     f'fill="#4a7fb5"><title>{html.escape(str(label))}: {value}</title></rect>')
        if len(items) <= 12:
            parts.append(f'<text x="{x + bar / 2:.1f}" y="{height + 14}" font-size="10" text-anchor="middle">'
                         f'{html.escape(str(label))[:14]}</text>')
    parts.append(f'<text x="2" y="{height - (height - 30) + 10}" font-size="10">{top}</text></svg>')
    return "".join(parts)


def svg_histogram(values: Sequence[float], title: str, bins: int = 20) -> str:
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return svg_bars({}, f"{title} (no values)")
    counts, edges = np.histogram(values, bins=min(bins, max(len(set(values)), 1)))
    labels = [f"{edges[i]:.3g}" for i in range(len(counts))]
    return svg_bars(dict(zip(labels, counts.tolist())), f"{title} (n={len(values)})")


def report(built: Any, stats: dict) -> str:
    """One self-contained HTML page of a config's statistics."""
    name = f"{built.name}/{built.config}"
    plots, tables = [], ""
    if "lengths" in stats:
        plots += [svg_histogram(stats["lengths"], "transitions per episode"),
                  svg_histogram(stats["returns"], "return per episode"),
                  svg_bars({f"{k:g}": v for k, v in stats["rewards"].items()}, "rewards")]
        plots += [svg_histogram(v, f"'{flag}' steps per episode") for flag, v in stats["flags_per_episode"].items()]
        plots += [svg_histogram(v, f"action: {part}") for part, v in stats["actions"].items()]
        summary = (f"{stats['items']} episodes, {sum(stats['lengths'])} transitions, {stats['terminal']} terminal, "
                   f"mean return {np.mean(stats['returns']) if stats['returns'] else 0:.1f}")
    elif "answers" in stats:
        plots += [svg_bars(stats["answers"], "answers"), svg_bars({f"{k:g}": v for k, v in stats["labels"].items()},
                                                                  "labels (P(left preferred))"),
                  svg_histogram(stats["total_time"], "seconds per query"),
                  svg_bars(collections.Counter(stats["repeat_count"]), "Repeat Video presses"),
                  svg_bars({f"user {k}": v for k, v in stats["annotators"].items()}, "responses per annotator")]
        summary = f"{stats['items']} responses, {stats['skipped']} skipped"
        if "agreement" in stats:
            tables = agreement_tables(stats["agreement"])
    else:
        plots.append(svg_histogram([b / 1e3 for b in stats["video_bytes"]], "video kB"))
        summary = f"{stats['items']} queries"
    body = "\n".join(f'<figure>{plot}</figure>' for plot in plots)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(name)}</title>'
            '<style>body{font-family:sans-serif;margin:1em}figure{display:inline-block;margin:0.5em}</style></head>'
            f'<body><h1>{html.escape(name)}</h1><p>{html.escape(built.spec.description)}.</p>'
            f'<p>{html.escape(summary)}</p>{body}{tables}</body></html>')


def agreement_tables(figures: dict) -> str:
    """The per-participant and agreement tables of `dropj.loaders.agreement.figures`, as HTML."""
    def table(head: Sequence[str], rows: list[list[Any]]) -> str:
        cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
        return f'<table border="1" cellpadding="4" style="border-collapse:collapse"><tr>{cells}</tr>{body}</table>'

    def when(epoch: Any) -> str:
        import datetime

        return "-" if epoch is None else datetime.datetime.fromtimestamp(epoch).isoformat(" ", "seconds")

    def counts(by_answer: dict) -> str:
        return ", ".join(f"{a}: {n}" for a, n in by_answer.items())

    people = [[f"user {p['user']}", f"{p['responses']} of {p['of']}" if p["of"] else p["responses"], p["answered"],
               p["skipped"], p["repeats"], "-" if p["seconds_median"] is None else
               f"{p['seconds_median']:.1f} ({p['seconds_mean']:.1f})", when(p["consented_at"]),
               when(p["completed_at"]), "; ".join(f"{q}: {counts(c)}" for q, c in p["answers"].items())]
              for p in figures["participants"]]
    questions = [[q["question"], counts(q["distribution"]), q["shared_queries"], q["raters"], q["statistic"] or "-",
                  f"{q['kappa']:.3f}" if q["kappa"] is not None else f"undefined: {q['undefined']}"]
                 for q in figures["questions"]]
    left = (f"<p>{figures['participants_left_off']} more participants not listed.</p>"
            if figures["participants_left_off"] else "")
    return ("<section><h2>Participants</h2>"
            + table(["participant", "progress", "answered", "skipped", "repeats", "seconds per query: median (mean)",
                     "consented", "finished", "answers"], people) + left
            + "<h2>Agreement on shared queries</h2><p>Two participants: Cohen's kappa; three or more: Fleiss' kappa "
              "(dropj.loaders.agreement).</p>"
            + table(["question", "answers given", "shared queries", "participants", "statistic", "kappa"], questions)
            + "</section>")


# --- one episode ----------------------------------------------------------------------------------------

class Frames:
    """An episode's RGB frames, (T+1, H, W, 3) uint8, each made when asked for: the observations as stored, or
    latent states as heat maps (one colour scale for the whole episode) or as a VAE's decodes.

    Made on demand because a rendered episode is far larger than a stored one: a heat map is 192x192x3 bytes
    for a latent state of about 2 kB, so 20,000 dream steps would take 2.2 GB (`dropj serve` held 4.8 GiB).
    `np.asarray(frames)` makes them all at once (VAE decodes in one batch).
    """

    def __init__(self, observations: np.ndarray, env: Optional[schema.EnvSpec] = None, vae: Optional[str] = None):
        self.observations = observations
        self.latent = observations.ndim == 2
        self._env, self._vae, self._model = env, vae, None
        self._scale = heat_scale(observations) if self.latent and not vae else 1.0

    def __len__(self) -> int:
        return len(self.observations)

    def __getitem__(self, t: int) -> np.ndarray:
        if not self.latent:
            return self.observations[t].astype(np.uint8)
        if self._vae:
            return self._decode(self.observations[t:t + 1])[0]
        return heat_maps(self.observations[t:t + 1], scale=self._scale)[0]

    def __iter__(self):
        return (self[t] for t in range(len(self)))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        if self.latent and self._vae:
            frames = self._decode(self.observations)
        elif self.latent:
            frames = heat_maps(self.observations, scale=self._scale)
        else:
            frames = self.observations.astype(np.uint8)
        return frames if dtype is None else frames.astype(dtype)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self[0].shape) if len(self) else (0,)

    dtype = np.dtype(np.uint8)

    @property
    def nbytes(self) -> int:
        """What is held: the stored observations (rendered frames are not kept)."""
        return int(self.observations.nbytes)

    def _decode(self, states: np.ndarray) -> np.ndarray:
        import torch

        if self._model is None:
            from dropj.models import ConvVAE, load_checkpoint

            self._model = ConvVAE.for_env(self._env)
            load_checkpoint(self._model, self._vae)
            self._model.eval()
        with torch.no_grad():
            z = torch.as_tensor(np.asarray(states, np.float32)[:, :self._env.n_z])
            images = self._model.decode(z).permute(0, 2, 3, 1).numpy()
        return (images * 255).round().astype(np.uint8)


@dataclasses.dataclass
class Episode:
    """The steps of one episode, ready to show: RGB frames, the columns and the pace."""

    frames: Frames  # (T+1, H, W, 3) uint8: the observations, or heat maps (or decodes) of latent states
    actions: np.ndarray  # (T+1, 3)
    rewards: np.ndarray  # (T+1,)
    flags: list[list[str]]  # the info flags true on each step
    fps: float
    latent: bool

    @property
    def nbytes(self) -> int:
        """About what it holds in memory (a list of flags: its pointers; the flag names are shared)."""
        return self.frames.nbytes + self.actions.nbytes + self.rewards.nbytes + 64 * len(self.flags) + \
            8 * sum(len(f) for f in self.flags)


def load_episode(built: Any, index: int, vae: Optional[str] = None) -> Episode:
    """Episode `index` (0-based, in stored order) of an episode or sketch config.

    Latent states are shown as heat maps, or as the frames a VAE checkpoint (`vae`, the release's
    `{'model_state', ...}` format for this environment) decodes from their z part.
    """
    if schema.kind_of(built.spec).shown_as != schema.EPISODE_VIEW:
        raise ValueError(f"{built.spec.config} holds {built.spec.kind}, not episodes")
    if not 0 <= index < built.count:
        raise ValueError(f"episode {index} is out of range: the dataset holds {built.count}")
    import tensorflow_datasets as tfds
    from dropj.converters.store import dataset_dir

    # At most the cap's steps and one more are ever made, whatever the shard claims: an episode beyond the
    # cap (the pickle reader's, `DROPJ_MAX_EPISODE_STEPS`) is refused before the rest of it is read.
    cap = dataset_dir.max_steps()
    ds = built.builder.as_dataset(split="train", shuffle_files=False).skip(index).take(1)
    [example] = tfds.as_numpy(ds.map(lambda ex: {**ex, schema.STEPS: ex[schema.STEPS].take(cap + 1).batch(cap + 1)
                                                 .get_single_element()}))
    steps = example[schema.STEPS]
    if len(steps[schema.IS_FIRST]) > cap:
        raise schema.DataError(f"{built.directory}: episode {index} has more than the {cap} steps an episode may "
                               f"have ({cap - 1} transitions); set DROPJ_MAX_EPISODE_STEPS to its transitions, "
                               "or more, to show it")
    observations = np.asarray(steps[schema.OBSERVATION])
    latent = observations.ndim == 2
    frames = Frames(observations, built.spec.env, vae if latent else None)
    info = steps.get(schema.INFO) or {}
    flags = [[name for name, column in info.items() if column[t] == schema.INFO_TRUE] for t in range(len(frames))]
    fps = FRAME_PACE
    if schema.WALL_TIME in steps:  # a recording: its own pace
        wall = np.asarray(steps[schema.WALL_TIME], dtype=np.float64)
        if len(wall) > 1 and wall[-1] > wall[0]:
            fps = (len(wall) - 1) / (wall[-1] - wall[0])
    return Episode(frames, np.asarray(steps[schema.ACTION], np.float64), np.asarray(steps[schema.REWARD]),
                   flags, float(fps), latent)


def heat_scale(states: np.ndarray) -> float:
    """The colour scale of an episode's heat maps: the 99th percentile of |value| (1 when that is 0)."""
    return float(np.percentile(np.abs(np.nan_to_num(states.astype(np.float64))), 99)) or 1.0


def heat_maps(states: np.ndarray, side: int = 8, scale: Optional[float] = None) -> np.ndarray:
    """Latent states (T, D) as RGB heat maps, blue < 0 < red, one cell per value, `side` pixels a cell;
    `scale` (default: `heat_scale(states)`) is the |value| shown at full colour."""
    t, d = states.shape
    cols = int(math.ceil(math.sqrt(d)))
    rows = int(math.ceil(d / cols))
    grid = np.zeros((t, rows * cols), np.float64)
    grid[:, :d] = np.nan_to_num(states.astype(np.float64))
    scale = heat_scale(states) if scale is None else scale
    v = np.clip(grid / scale, -1.0, 1.0).reshape(t, rows, cols)
    rgb = np.empty((t, rows, cols, 3), np.float64)
    rgb[..., 0] = np.where(v > 0, 1.0, 1.0 + v)
    rgb[..., 1] = 1.0 - np.abs(v)
    rgb[..., 2] = np.where(v < 0, 1.0, 1.0 - v)
    rgb[:, :, :, :][np.repeat((np.arange(rows * cols) >= d).reshape(1, rows, cols), t, axis=0)] = 0.85
    image = (rgb * 255).round().astype(np.uint8)
    return image.repeat(side, axis=1).repeat(side, axis=2)


def overlay(episode: Episode, t: int, scale: int = 4) -> np.ndarray:
    """Step t's frame, enlarged, with its action, reward and flags written below it."""
    from PIL import Image, ImageDraw

    frame = episode.frames[t]
    factor = max(1, scale if frame.shape[0] < 200 else 1)
    image = Image.fromarray(frame).resize((frame.shape[1] * factor, frame.shape[0] * factor), Image.NEAREST)
    canvas = Image.new("RGB", (image.width, image.height + 34), (255, 255, 255))
    canvas.paste(image, (0, 0))
    draw = ImageDraw.Draw(canvas)
    steer, gas, brake = episode.actions[t]
    draw.text((4, image.height + 2), f"t={t}  steer {steer:+.1f} gas {gas:.1f} brake {brake:.1f}", fill=(0, 0, 0))
    draw.text((4, image.height + 17), f"reward {episode.rewards[t]:+g}  {' '.join(episode.flags[t])}",
              fill=(160, 0, 0) if episode.flags[t] else (0, 0, 0))
    return np.asarray(canvas)


def write_animation(episode: Episode, out: str | Path) -> Path:
    """The episode with overlays as .gif (Pillow) or .mp4 (H.264 through PyAV), at its recorded pace."""
    from PIL import Image

    out = Path(out)
    frames = [overlay(episode, t) for t in range(len(episode.frames))]
    if out.suffix.lower() == ".gif":
        images = [Image.fromarray(f) for f in frames]
        buffer = io.BytesIO()
        images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:],
                       duration=max(20, round(1000 / episode.fps)), loop=0)
        data = buffer.getvalue()
    elif out.suffix.lower() == ".mp4":
        data = _mp4(frames, episode.fps)
    else:
        raise ValueError(f"{out}: write .gif or .mp4")
    from dropj.converters.store.durable import write_atomically

    write_atomically(out, lambda f: f.write(data), force=True)
    return out


def _mp4(frames: list[np.ndarray], fps: float) -> bytes:
    import fractions

    import av

    height, width = (s - s % 2 for s in frames[0].shape[:2])  # yuv420p needs even sides
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fractions.Fraction(round(fps * 1000), 1000))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:height, :width]),
                                                                   format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()
