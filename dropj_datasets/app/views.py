"""What `dropj serve`, `dropj show` and `dropj stats` show of a built dataset: statistics, charts and episode frames.

    built = open_built('dropj_carracing/real', 'demo_data')
    stats = statistics(built)                      # counts, lengths, returns, flags, actions, answers, labels
    html = report(built, stats)                    # one self-contained page: what the build holds, charts
                                                   # (`charts.py`, inline SVG) and sortable tables of its items
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
from dropj_datasets.app import charts

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


# --- the page of statistics (its charts: `charts.py`) -----------------------------------------------------

STATIC = Path(__file__).parent / "web" / "static"
MAX_ROWS = 1000  # rows of an item table at most (the release's configs hold at most 800 items)
NOUNS = {schema.EPISODE_VIEW: ("episode", "episodes"), schema.RESPONSE_VIEW: ("response", "responses"),
         schema.QUERY_VIEW: ("query", "queries")}


def noun(spec: schema.Spec, plural: bool = True) -> str:
    """What a config's items are called: episodes, sketches, responses or queries (or one of them)."""
    words = ("sketch", "sketches") if isinstance(spec, schema.SketchSpec) else NOUNS[schema.kind_of(spec).shown_as]
    return words[plural]


def about(spec: schema.Spec, name: str) -> str:
    """What the config is: the release's, whose description counts the whole release, or one our tools write."""
    if spec.config in schema.DATASETS.get(name, {}):
        return f"Release config: {spec.description}."
    return f"Config: {spec.description}."


def holds(built: Any, stats: dict) -> str:
    """What this build holds, from its counts ('This build holds 3 episodes: 77 transitions, ...'), not from
    the config's description, which counts the whole release."""
    n, what = stats["items"], noun(built.spec)
    counted = f" (the first {n:,} of {built.count:,} counted)" if built.count > n else ""
    if "lengths" in stats:
        returns = stats["returns"]
        detail = (f"{sum(stats['lengths']):,} transitions, {stats['terminal']:,} ending in a terminal step"
                  + (f", return {charts.number(min(returns))} to {charts.number(max(returns))} "
                     f"(mean {np.mean(returns):.1f})" if returns else ""))
    elif "answers" in stats:
        people = len(stats["annotators"])
        detail = (f"{n - stats['skipped']:,} answered, {stats['skipped']:,} skipped, from "
                  f"{schema.counted(people, 'participant')}")
    else:
        sizes = stats["video_bytes"]
        detail = f"videos of {min(sizes) / 1e3:.1f} to {max(sizes) / 1e3:.1f} kB" if sizes else "no videos"
    return f"This build holds {n:,} {what}{counted}: {detail}."


def answer_order(spec: schema.Spec, patterns: Sequence[str]) -> list[str]:
    """Answer patterns ('Yes/Yes/Left') in the method's order: each answer by its place among the options of
    the question asked at that point (`study.Study(spec).questions`); answers the method does not offer last."""
    from dropj.converters.feedback import study

    questions = study.Study(spec).questions

    def key(pattern: str) -> list[tuple[int, str]]:
        place = []
        for k, answer in enumerate(pattern.split("/")):
            options = questions[k].options if k < len(questions) else ()
            place.append((options.index(answer), "") if answer in options else (len(options), answer))
        return place

    return sorted(patterns, key=key)


def report(built: Any, stats: dict, *, link: Optional[str] = None) -> str:
    """One self-contained HTML page of a config's statistics: what this build holds, charts of its figures and
    sortable tables of its items (the style and the script inline: nothing is fetched). With `link`
    ('/d/NAME/CONFIG/', as `dropj serve` shows the page), each item links to its page there."""
    name = f"{built.name}/{built.config}"
    if "lengths" in stats:
        plots, tables = _episode_figures(built, stats, link)
    elif "answers" in stats:
        plots, tables = _response_figures(built, stats, link)
    else:
        kb = [b / 1e3 for b in stats["video_bytes"]]
        plots = [charts.distribution(kb, "video kB", unit="queries", xlabel="kB")]
        rows = [[_item(link, "item", i), _number(v, f"{v:.1f}")] for i, v in enumerate(kb)]
        tables = _titled_table("Queries", ["query", "video kB"], rows, stats["items"])
    figures = "\n".join(f"<figure>{plot}</figure>" for plot in plots)
    style = "body{font-family:sans-serif;margin:1em;color:#222}" + (STATIC / "stats.css").read_text()
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(name)}</title>'
            f'<style>{style}</style><script>{(STATIC / "sortable.js").read_text()}</script></head>'
            f'<body><h1>{html.escape(name)}</h1><p id="holds">{html.escape(holds(built, stats))}</p>'
            f'<p id="about">{html.escape(about(built.spec, built.name))}</p>\n{figures}\n{tables}</body></html>')


def _episode_figures(built: Any, stats: dict, link: Optional[str]) -> tuple[list[str], str]:
    flags, one, many = stats["flags_per_episode"], noun(built.spec, plural=False), noun(built.spec)
    plots = [charts.distribution(stats["lengths"], f"transitions per {one}", unit=many, xlabel="transitions"),
             charts.distribution(stats["returns"], f"return per {one}", unit=many, xlabel="return"),
             charts.distribution(list(stats["rewards"]), "reward per step", weights=list(stats["rewards"].values()),
                                 unit="steps", xlabel="reward")]
    plots += [charts.distribution(v, f"'{flag}' steps per {one}", unit=many, xlabel="steps with it set")
              for flag, v in flags.items()]
    plots += [charts.distribution(v, f"action: {part}", unit="transitions", xlabel=part)
              for part, v in stats["actions"].items()]
    rows = [[_item(link, "episode", i), _number(n), _number(r), Cell("yes" if t else "no", int(t)),
             *(_number(v[i]) for v in flags.values())]
            for i, (n, r, t) in enumerate(zip(stats["lengths"], stats["returns"], stats["terminal_per_episode"]))]
    head = [one, "transitions", "return", "terminal", *(f"'{flag}' steps" for flag in flags)]
    return plots, _titled_table(many.title(), head, rows, stats["items"])


def _response_figures(built: Any, stats: dict, link: Optional[str]) -> tuple[list[str], str]:
    order = answer_order(built.spec, list(stats["answers"]))
    users = sorted(stats["annotators"])
    plots = [charts.bars(stats["answers"], "answers", order=order, unit="responses"),
             charts.distribution(list(stats["labels"]), "labels (P(left preferred))",
                                 weights=list(stats["labels"].values()), unit="responses", xlabel="label"),
             charts.distribution(stats["total_time"], "seconds per query", unit="responses", xlabel="seconds"),
             charts.distribution(stats["repeat_count"], "Repeat Video presses", unit="responses",
                                 xlabel="presses per response"),
             charts.bars({f"user {u}": stats["annotators"][u] for u in users}, "responses per annotator",
                         order=[f"user {u}" for u in users], unit="responses")]
    by_user: dict[int, list[int]] = {u: [] for u in users}
    for i, user in enumerate(stats["user_per_response"]):
        by_user[user].append(i)
    given = stats["answer_per_response"]
    if "agreement" in stats:
        people = agreement_tables(stats["agreement"])
    else:
        rows = []
        for user, items in by_user.items():
            mine = collections.Counter(given[i] for i in items if given[i] is not None)
            seconds = [stats["total_time"][i] for i in items if math.isfinite(stats["total_time"][i])]
            rows.append([Cell(f"user {user}", user), _number(len(items)), _number(sum(given[i] is None for i in items)),
                         ", ".join(f"{a}: {mine[a]}" for a in answer_order(built.spec, list(mine))),
                         _number(sum(stats["repeat_count"][i] for i in items)),
                         _number(float(np.median(seconds)) if seconds else math.nan,
                                 f"{np.median(seconds):.1f} ({np.mean(seconds):.1f})" if seconds else "-")])
        people = _titled_table("Participants", ["participant", "responses", "skipped", "answers",
                                                "Repeat Video presses", "seconds per query: median (mean)"],
                               rows, len(users))
    rows = [[_item(link, "item", i), Cell(f"user {user}", user), Cell("skipped", "") if given[i] is None else given[i],
             _number(seconds, f"{seconds:.2f}" if math.isfinite(seconds) else "not recorded"), _number(repeats)]
            for i, (user, seconds, repeats) in enumerate(zip(stats["user_per_response"], stats["total_time"],
                                                              stats["repeat_count"]))]
    return plots, people + _titled_table("Responses", ["response", "participant", "answers", "seconds",
                                                       "Repeat Video presses"], rows, stats["items"])


@dataclasses.dataclass(frozen=True)
class Cell:
    """A table cell: its text (HTML when `markup`), the key it sorts by, aligned right when a `number`."""

    text: str
    sort: Any = None
    markup: bool = False
    number: bool = False


def _item(link: Optional[str], what: str, index: int) -> Cell:
    """An item's index: a link to its page when served."""
    return Cell(f'<a href="{html.escape(link)}{what}/{index}">{index}</a>' if link else str(index), index,
                markup=bool(link), number=True)


def _number(value: float, text: Optional[str] = None) -> Cell:
    """A number, shown as `text` (else `charts.number`), sorted by its exact value (last when not finite)."""
    exact = str(value) if isinstance(value, int) else repr(float(value)) if math.isfinite(value) else ""
    return Cell(charts.number(value) if text is None else text, exact, number=True)


def _titled_table(title: str, head: Sequence[str], rows: list[list[Any]], count: int) -> str:
    shown = rows[:MAX_ROWS]
    more = f" (the first {len(shown):,} of {count:,})" if count > len(shown) else ""
    return f"<h2>{html.escape(title)}{more}</h2>" + table(head, shown, scroll=len(shown) > 20)


def table(head: Sequence[str], rows: list[list[Any]], scroll: bool = False) -> str:
    """A sortable table (`static/sortable.js`) of cells: `Cell`s, or any value as its text; `scroll`: in a box
    of its own height, its header kept in view."""
    def cell(value: Any) -> str:
        if not isinstance(value, Cell):
            return f"<td>{html.escape(str(value))}</td>"
        text = value.text if value.markup else html.escape(value.text)
        key = "" if value.sort is None else f' data-sort="{html.escape(str(value.sort))}"'
        number = ' class="n"' if value.number else ""
        return f"<td{key}{number}>{text}</td>"

    right = [' class="n"' if rows and all(isinstance(row[k], Cell) and row[k].number for row in rows) else ""
             for k in range(len(head))]  # a column of numbers, its header too
    heads = "".join(f'<th{right[k]}><button type="button">{html.escape(h)}</button></th>' for k, h in enumerate(head))
    body = "".join("<tr>" + "".join(cell(c) for c in row) + "</tr>" for row in rows)
    out = f'<table class="sortable"><thead><tr>{heads}</tr></thead><tbody>{body}</tbody></table>'
    return f'<div class="scroll">{out}</div>' if scroll else out


def agreement_tables(figures: dict) -> str:
    """The per-participant and agreement tables of `dropj.loaders.agreement.figures`, as HTML."""
    def when(epoch: Any) -> Cell:
        import datetime

        return Cell("-", "") if epoch is None else \
            Cell(datetime.datetime.fromtimestamp(epoch).isoformat(" ", "seconds"), epoch)

    def counts(by_answer: dict) -> str:
        return ", ".join(f"{a}: {n}" for a, n in by_answer.items())

    people = [[Cell(f"user {p['user']}", p["user"]),
               _number(p["responses"], f"{p['responses']} of {p['of']}" if p["of"] else None),
               _number(p["answered"]), _number(p["skipped"]), _number(p["repeats"]),
               Cell("-", "") if p["seconds_median"] is None else
               _number(p["seconds_median"], f"{p['seconds_median']:.1f} ({p['seconds_mean']:.1f})"),
               when(p["consented_at"]), when(p["completed_at"]),
               "; ".join(f"{q}: {counts(c)}" for q, c in p["answers"].items())]
              for p in figures["participants"]]
    questions = [[q["question"], counts(q["distribution"]), _number(q["shared_queries"]), _number(q["raters"]),
                  q["statistic"] or "-", _number(q["kappa"], f"{q['kappa']:.3f}") if q["kappa"] is not None
                  else Cell(f"undefined: {q['undefined']}", "")]
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
    `scale`: the |value| a heat map shows at full colour (`heat_scale`), None when the frames are not heat maps.
    """

    def __init__(self, observations: np.ndarray, env: Optional[schema.EnvSpec] = None, vae: Optional[str] = None):
        import threading

        self.observations = observations
        self.latent = observations.ndim == 2
        self._env, self._vae, self._model = env, vae, None
        self._loading = threading.Lock()  # `dropj serve` asks for frames on several threads: one model load
        self.scale: Optional[float] = heat_scale(observations) if self.latent and not vae else None

    def __len__(self) -> int:
        return len(self.observations)

    def __getitem__(self, t: int) -> np.ndarray:
        if not self.latent:
            return self.observations[t].astype(np.uint8)
        if self._vae:
            return self._decode(self.observations[t:t + 1])[0]
        return heat_maps(self.observations[t:t + 1], scale=self.scale)[0]

    def __iter__(self):
        return (self[t] for t in range(len(self)))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        if self.latent and self._vae:
            frames = self._decode(self.observations)
        elif self.latent:
            frames = heat_maps(self.observations, scale=self.scale)
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

        with self._loading:
            if self._model is None:
                from dropj.models import ConvVAE, load_checkpoint

                model = ConvVAE.for_env(self._env)
                load_checkpoint(model, self._vae)
                self._model = model.eval()
        with torch.no_grad():
            z = torch.as_tensor(np.asarray(states, np.float32)[:, :self._env.n_z])
            images = self._model.decode(z).permute(0, 2, 3, 1).numpy()
        return (images * 255).round().astype(np.uint8)


@dataclasses.dataclass
class Episode:
    """The steps of one episode, ready to show: RGB frames, the columns and the pace.

    `padding_last`: its kind ends each episode in a step that only holds the final state (`Kind.extra_last_step`):
    that step's action and reward are padding, no action was taken there, and the views say so.
    """

    frames: Frames  # (T+1, H, W, 3) uint8: the observations, or heat maps (or decodes) of latent states
    actions: np.ndarray  # (T+1, 3)
    rewards: np.ndarray  # (T+1,)
    flags: list[list[str]]  # the info flags true on each step
    fps: float
    latent: bool
    padding_last: bool = False

    def padding(self, t: int) -> bool:
        """Whether step t is the padding step: the final state, with no action taken."""
        return self.padding_last and t == len(self.frames) - 1

    @property
    def scale(self) -> Optional[float]:
        """The heat maps' colour scale (|value| at full colour), None when the frames are not heat maps."""
        return self.frames.scale

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
                   flags, float(fps), latent, schema.kind_of(built.spec).extra_last_step)


def heat_scale(states: np.ndarray) -> float:
    """The colour scale of an episode's heat maps: the 99th percentile of |value| (1 when that is 0)."""
    return float(np.percentile(np.abs(np.nan_to_num(states.astype(np.float64))), 99)) or 1.0


def heat_maps(states: np.ndarray, side: int = 8, scale: Optional[float] = None) -> np.ndarray:
    """Latent states (T, D) as RGB heat maps, blue < 0 < red, one cell per value, `side` pixels a cell, row by
    row (grey: the grid's cells past the last value); `scale` (default: `heat_scale(states)`) is the |value|
    shown at full colour."""
    t, d = states.shape
    cols = int(math.ceil(math.sqrt(d)))
    rows = int(math.ceil(d / cols))
    grid = np.zeros((t, rows * cols), np.float64)
    grid[:, :d] = np.nan_to_num(states.astype(np.float64))
    scale = heat_scale(states) if scale is None else scale
    rgb = heat_colours(grid.reshape(t, rows, cols) / scale)
    rgb[:, :, :, :][np.repeat((np.arange(rows * cols) >= d).reshape(1, rows, cols), t, axis=0)] = 0.85
    image = (rgb * 255).round().astype(np.uint8)
    return image.repeat(side, axis=1).repeat(side, axis=2)


def heat_colours(v: np.ndarray) -> np.ndarray:
    """The heat maps' colours, (..., 3) floats in [0, 1], of values in units of the scale: -1 (or less) blue,
    0 white, +1 (or more) red, linear in between (so a CSS gradient blue, white, red draws the same bar)."""
    v = np.clip(v, -1.0, 1.0)
    return np.stack([np.where(v > 0, 1.0, 1.0 + v), 1.0 - np.abs(v), np.where(v < 0, 1.0, 1.0 - v)], axis=-1)


OVERLAY_FONT_PX = 18  # `dropj show`'s text (Pillow's own TrueType font): about 16 px from ascender to descender
OVERLAY_MIN_WIDTH = 336  # an 84x84 frame enlarged 4 times; a line of the overlay fits in it
_INK, _FLAG_INK, _PADDING_FILL, _PADDING_INK = (0, 0, 0), (170, 0, 0), (255, 205, 80), (80, 45, 0)


@functools.lru_cache(maxsize=None)
def _font(size: int) -> Any:
    from PIL import ImageFont

    return ImageFont.load_default(size=size)  # Pillow's bundled TrueType font (Pillow >= 10.1)


def _signed(x: float) -> str:
    """+10, -1, 0: as the player writes a reward."""
    return f"{x:+g}" if x else "0"


def _fit(draw: Any, line: str, font: Any, width: float) -> str:
    """`line`, cut short with an ellipsis where it is wider than `width` pixels."""
    if draw.textlength(line, font=font) <= width:
        return line
    while line and draw.textlength(line + "\u2026", font=font) > width:
        line = line[:-1]
    return line + "\u2026"


def overlay(episode: Episode, t: int, scale: int = 4) -> np.ndarray:
    """Step t's frame, enlarged, with what happened there written below it in a legible font: step t of the
    last, its reward, its action and the info flags true on it. The padding step (`Episode.padding`) is marked
    instead (an amber border and band: no action was taken there); heat maps get the colour bar of their
    scale. Every step of an episode gets the same size (the frames of one animation)."""
    from PIL import Image, ImageDraw

    frame = episode.frames[t]
    factor = max(1, scale if frame.shape[0] < 200 else 1)
    image = Image.fromarray(frame).resize((frame.shape[1] * factor, frame.shape[0] * factor), Image.NEAREST)
    font = _font(OVERLAY_FONT_PX)
    line, margin = OVERLAY_FONT_PX + 8, 8
    width = max(image.width, OVERLAY_MIN_WIDTH)
    legend = 2 * line if episode.scale is not None else 0
    canvas = Image.new("RGB", (width, image.height + 3 * line + margin + legend), (255, 255, 255))
    canvas.paste(image, ((width - image.width) // 2, 0))
    draw = ImageDraw.Draw(canvas)
    y, right = image.height + margin // 2, width - margin
    draw.text((margin, y), f"step {t} of {len(episode.frames) - 1}", font=font, fill=_INK)
    if episode.padding(t):
        draw.rectangle((0, 0, width - 1, image.height - 1), outline=_PADDING_FILL, width=6)
        draw.rectangle((0, y + line - 4, width - 1, y + 3 * line - 4), fill=_PADDING_FILL)
        draw.text((margin, y + line), _fit(draw, "padding step: no action taken", font, right - margin),
                  font=font, fill=_PADDING_INK)
        draw.text((margin, y + 2 * line), _fit(draw, "the final state; action, reward: padding", font,
                                               right - margin), font=font, fill=_PADDING_INK)
    else:
        steer, gas, brake = episode.actions[t]
        draw.text((right, y), f"reward {_signed(episode.rewards[t])}", font=font, fill=_INK, anchor="ra")
        draw.text((margin, y + line), f"steer {steer:+.2f}  gas {gas:.2f}  brake {brake:.2f}", font=font, fill=_INK)
        draw.text((margin, y + 2 * line), _fit(draw, " ".join(episode.flags[t]), font, right - margin), font=font,
                  fill=_FLAG_INK)
    if episode.scale is not None:
        _colour_bar(canvas, draw, font, episode.scale, margin, y + 3 * line, right)
    return np.asarray(canvas)


def _colour_bar(canvas: Any, draw: Any, font: Any, scale: float, left: int, top: int, right: int) -> None:
    """The heat maps' legend: 'latent value', a bar from -scale (blue) through 0 (white) to +scale (red), and
    those three values under it."""
    from PIL import Image

    label = "latent value"
    draw.text((left, top), label, font=font, fill=_INK)
    x0 = left + int(draw.textlength(label, font=font)) + 12
    bar = (heat_colours(np.linspace(-1.0, 1.0, max(right - x0, 2))) * 255).round().astype(np.uint8)
    canvas.paste(Image.fromarray(np.repeat(bar[None], OVERLAY_FONT_PX - 2, axis=0)), (x0, top + 2))
    under = top + OVERLAY_FONT_PX + 4
    for x, value, anchor in ((x0, f"{-scale:.3g}", "la"), ((x0 + right) // 2, "0", "ma"),
                             (right, f"+{scale:.3g}", "ra")):
        draw.text((x, under), value, font=font, fill=_INK, anchor=anchor)


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
