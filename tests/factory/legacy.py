"""Small synthetic release files for tests, in exactly the legacy formats.

Frames are random noise (fast, and they defeat PNG compression, so nothing
passes by accident); the embedded sample has the realistic frames.
"""

from __future__ import annotations

import copy
import pickle
import zipfile
from pathlib import Path
from typing import Optional

import numpy as np

from dropj_datasets import schema
from dropj_datasets.schema import DatasetSpec

KEYBOARD_STEER = (-1.0, 0.0, 1.0)
KEYBOARD_GAS = (0.0, 1.0)
KEYBOARD_BRAKE = (0.0, 0.8)


def keyboard_action(rng: np.random.Generator) -> np.ndarray:
    return np.array([rng.choice(KEYBOARD_STEER), rng.choice(KEYBOARD_GAS), rng.choice(KEYBOARD_BRAKE)])


def real_episode(spec: DatasetSpec, length: int, rng: np.random.Generator, ending: str = "truncated") -> list:
    """`ending`: 'truncated' (time limit), 'terminated' (left the playfield),
    'limit_and_oob' (TimeLimit.truncated=False), or 'open' (done stays 0.0)."""
    frames = [rng.integers(0, 256, spec.env.frame_shape, dtype=np.uint8) for _ in range(length + 1)]
    env_keys = [k for k in spec.info_keys if k != schema.TIME_LIMIT_TRUNCATED]
    out = []
    for t in range(length):
        info: dict = {}
        reward = 0
        roll = rng.random()
        if roll < 0.2:
            info["crash"], reward = True, -1
        elif roll < 0.4:
            info["succ"], reward = True, 10
        for key in env_keys[2:]:
            if rng.random() < 0.1:
                info[key] = True
        last = t == length - 1
        done = 0.0
        if last and ending != "open":
            done = 1.0
            if ending == "truncated":
                info[schema.TIME_LIMIT_TRUNCATED] = True
            elif ending == "limit_and_oob":
                info["crash"], reward = True, -1
                info[schema.TIME_LIMIT_TRUNCATED] = False
            else:
                info.pop("succ", None)
                info["crash"], reward = True, -1
        out.append(copy.deepcopy((frames[t], keyboard_action(rng), reward, frames[t + 1], done, info)))
    return out


def dream_episodes(spec: DatasetSpec, lengths: list[int], initial_states: np.ndarray,
                   rng: np.random.Generator) -> tuple[list, list]:
    """(env-unit episodes, scaled episodes); episode i starts from initial_states[i % n]."""
    plain, scaled = [], []
    for i, length in enumerate(lengths):
        state = initial_states[i % len(initial_states)].copy()  # float64, as the release
        ep_plain, ep_scaled = [], []
        for _ in range(length):
            nxt = rng.standard_normal(spec.env.latent_dim).astype(np.float32)
            action = keyboard_action(rng)
            ep_plain.append(copy.deepcopy((state, action, 0, nxt, 0.0, {})))
            ep_scaled.append(copy.deepcopy((state, schema.scale_action(action), 0, nxt, 0.0, {})))
            state = nxt
        plain.append(ep_plain)
        scaled.append(ep_scaled)
    return plain, scaled


def float32_exact_states(spec: DatasetSpec, count: int, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal((count, spec.env.latent_dim)).astype(np.float32).astype(np.float64)


def write_pickle(path: Path, value, protocol: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(value, f, protocol=protocol)
    return path


def write_zip(path: Path, members: dict[str, bytes], zip64: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, data in members.items():
            with archive.open(name, "w", force_zip64=zip64) as f:
                f.write(data)
    return path


def query_segments(n: int, width: int = 547, seed: int = 0, order: Optional[list[int]] = None) -> dict:
    """A data.pkl of `n` queries with noise segments, keyed '{i}.mp4' in `order` (default 0..n-1)."""
    rng = np.random.default_rng(seed)
    return {f"{i}.mp4": {"segment1": rng.standard_normal((20, width)), "segment2": rng.standard_normal((20, width))}
            for i in (order if order is not None else range(n))}


def make_real_source(manual_dir: Path, spec: DatasetSpec, lengths=(6, 3, 1), protocol: int = 5,
                     in_zip: bool = False, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    endings = ["truncated", "terminated", "limit_and_oob", "open"]
    episodes = [real_episode(spec, n, rng, endings[i % len(endings)]) for i, n in enumerate(lengths)]
    if in_zip:
        write_zip(manual_dir / "release.zip",
                  {f"release/{spec.sources.episodes}": pickle.dumps(episodes, protocol=protocol)}, zip64=True)
    else:
        write_pickle(manual_dir / "nested" / spec.sources.episodes, episodes, protocol)
    return episodes


def make_dream_source(manual_dir: Path, spec: DatasetSpec, lengths=(5, 4, 3), n_states: int = 2,
                      with_plain: bool = True, with_scaled: bool = True, with_states: bool = True,
                      seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    states = float32_exact_states(spec, n_states, rng)
    plain, scaled = dream_episodes(spec, list(lengths), states, rng)
    out: dict = {}
    if with_plain:
        out[spec.sources.episodes] = write_pickle(manual_dir / spec.sources.episodes, plain, 4)
    if with_scaled:
        out[spec.sources.scaled] = write_pickle(manual_dir / spec.sources.scaled, scaled, 4)
    if with_states:
        for name in spec.sources.initial_states:
            value: Optional[object] = list(states) if "obses" in name else states[0]
            out[name] = write_pickle(manual_dir / name, value, 5 if "obses" in name else 4)
    return {"plain": plain, "scaled": scaled, "states": states, "files": out}


def _answer(*fields) -> tuple:
    return tuple(fields)  # built at run time like the GUI's, so never a shared code constant


def responses() -> list:
    """Responses entries as `pref_gui.py` / `obst_pref_gui.py` write them, one of each kind (DATA_FORMATS §5)."""
    return [
        {"video": "0.mp4", "responses": [_answer("Which clip do you prefer?", "Left", 1.5)], "repeat_count": 0,
         "total_time": 2.0},
        {"video": "17.mp4", "responses": "Skipped", "repeat_count": 3, "total_time": 78.16},
        {"video": "3.mp4", "responses": [_answer("Does the left car stay safe?", "Yes", 6.66),
                                         _answer("Does the right car stay safe?", "Yes", 1.08),
                                         _answer("Which clip do you prefer?", "Equally", 1.51)],
         "repeat_count": 12, "total_time": 9.25},
        {"video": "4.mp4", "responses": [_answer("Please give Justification", "Chuckhole"),
                                         _answer("Please give Preference", "Right")], "repeat_count": 1,
         "total_time": 3.5},
    ]
