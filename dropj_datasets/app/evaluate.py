"""`dropj evaluate reward`: a preference reward model against human answers in a built preferences dataset.

    dropj evaluate reward --checkpoints RELEASE/carracing/pref_reward_models --note GUI_s20_just_resp500 \
        --dataset dropj_carracing/preferences_dropj --data_dir D --responses 500:600 --out eval.json
    dropj evaluate reward --checkpoints runs/reward --dataset dropj_annotations/dropj --data_dir OUT

`--note` names the release's per-member files (`reward_model_{m}_{NOTE}.pt`); without it, `--checkpoints`
is a `dropj train reward` run folder (its `checkpoint.pt`). The metrics are `dropj.models.evaluate`'s.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from dropj_datasets import schema


def parse_range(text: str) -> tuple[int, Optional[int]]:
    """'500:600' -> (500, 600); '500:' -> (500, None); response indices, end excluded."""
    start, sep, stop = text.partition(":")
    try:
        first, last = int(start or 0), (int(stop) if stop else None)
    except ValueError:
        raise ValueError(f"--responses must be START:STOP (response indices), got {text!r}") from None
    if not sep or first < 0 or (last is not None and last <= first):
        raise ValueError(f"--responses must be START:STOP with 0 <= START < STOP, got {text!r}")
    return first, last


def load_model(checkpoints: str, note: Optional[str]):
    from dropj.models import PreferenceRewardEnsemble, load_checkpoint, load_preference_members
    from dropj.models.checkpoints import read_checkpoint

    if note:
        return load_preference_members(checkpoints, note)
    path = Path(checkpoints) / "checkpoint.pt" if Path(checkpoints).is_dir() else Path(checkpoints)
    state = read_checkpoint(path).get("model_state", {})
    members = len({key.split(".")[1] for key in state if key.startswith("members.")})
    first = state.get("members.0.0.weight")
    if not members or first is None:
        raise ValueError(f"{path}: not a checkpoint of a preference reward ensemble (no members.N.* weights)")
    model = PreferenceRewardEnsemble(int(first.shape[1]), members=members)
    load_checkpoint(model, path)
    return model


def pairs(dataset: str, data_dir: Optional[str], responses: tuple[int, Optional[int]]):
    """(left, right, labels) of the labelled responses whose index is in the range, as torch tensors."""
    import torch

    from dropj.converters.roundtrip.built import BuiltDataset

    built = BuiltDataset.open(dataset, data_dir)
    if schema.content_of(built.spec) != schema.LABELLED_PAIRS:
        raise ValueError(f"{dataset} holds {built.spec.kind}; evaluation needs preferences or annotations")
    start, stop = responses
    left, right, labels = [], [], []
    for example in built.examples():
        index = int(example[schema.RESPONSE_INDEX])
        if index < start or (stop is not None and index >= stop) or not example[schema.HAS_LABEL]:
            continue
        for side, out in ((schema.LEFT, left), (schema.RIGHT, right)):
            steps = example[side]
            out.append(np.concatenate([steps[schema.OBSERVATION], steps[schema.ACTION]], axis=1))
        labels.append(float(example[schema.LABEL]))
    if not labels:
        raise ValueError(f"{dataset}: no labelled response in {start}:{'' if stop is None else stop}")
    return (torch.as_tensor(np.stack(left)), torch.as_tensor(np.stack(right)),
            torch.as_tensor(np.array(labels, np.float64)))


def evaluate_reward(checkpoints: str, dataset: str, *, note: Optional[str] = None, data_dir: Optional[str] = None,
                    responses: str = "0:", out: Optional[str] = None, log: Callable[[str], None] = print) -> dict:
    from dropj.models.evaluate import evaluate_preferences

    model = load_model(checkpoints, note)
    left, right, labels = pairs(dataset, data_dir, parse_range(responses))
    result = evaluate_preferences(model, left, right, labels)
    report = {"checkpoints": str(checkpoints), "note": note, "dataset": dataset, "responses": responses,
              **result.as_dict()}
    log(f"{dataset} responses {responses}: {result.count} labelled pairs, accuracy {result.accuracy:.3f}, "
        f"mean soft Bradley-Terry loss {result.mean_loss:.4f}")
    log(f"{'label':>6} {'pairs':>6} {'accuracy':>9} {'loss':>8} {'mean P(left)':>13}")
    for label, row in result.per_label.items():
        log(f"{label:6g} {row.count:6d} {row.accuracy:9.3f} {row.mean_loss:8.4f} {row.mean_p_left:13.3f}")
    if out:
        from dropj.converters.store.durable import write_atomically

        body = json.dumps(report, indent=1).encode()
        write_atomically(Path(out), lambda f: f.write(body), force=True)
        log(f"wrote {out}")
    return report
