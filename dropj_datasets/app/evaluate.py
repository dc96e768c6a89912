"""`dropj evaluate reward`: a preference reward model against human answers in a built preferences dataset.

    dropj evaluate reward --checkpoints RELEASE/carracing/pref_reward_models --note GUI_s20_just_resp500 \
        --dataset dropj_carracing/preferences_dropj --data_dir D --responses 500:600 --out eval.json
    dropj evaluate reward --checkpoints runs/reward --dataset dropj_annotations/dropj --data_dir OUT

`--note` names the release's per-member files (`reward_model_{m}_{NOTE}.pt`); without it, `--checkpoints`
is a `dropj train reward` run folder (its `checkpoint.pt`). The metrics are `dropj.models.evaluate`'s: the
accuracy by the authors' rule for the dataset's feedback method (DROP: the larger predicted return;
DROPe, DROPJ: equal within 0.3), the other rule's beside it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional

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


class Pairs(NamedTuple):
    """The labelled pairs evaluated, as torch tensors, and the feedback method that asked for them."""

    left: Any
    right: Any
    labels: Any
    method: Optional[str]


def pairs(dataset: str, data_dir: Optional[str], responses: tuple[int, Optional[int]]) -> Pairs:
    """The labelled responses whose index is in the range, and the dataset's feedback method (DROP, ...)."""
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
    return Pairs(torch.as_tensor(np.stack(left)), torch.as_tensor(np.stack(right)),
                 torch.as_tensor(np.array(labels, np.float64)), getattr(built.spec, "method", None))


def check_out(out: str) -> None:
    """`--out` must name a JSON file that can be written (said before anything is evaluated)."""
    path = Path(out)
    if path.is_dir():
        raise ValueError(f"{out} is a directory; --out names the JSON file to write, e.g. {path / 'eval.json'}")
    parent = next(p for p in path.absolute().parents if p.exists())
    if not parent.is_dir():
        raise ValueError(f"{out}: {parent} is a file, so nothing can be written there; choose another --out")


def _accuracy(value: Optional[float], width: int = 0) -> str:
    return f"{value:{width}.3f}" if value is not None else f"{'-':>{width}}"


def evaluate_reward(checkpoints: str, dataset: str, *, note: Optional[str] = None, data_dir: Optional[str] = None,
                    responses: str = "0:", out: Optional[str] = None, log: Callable[[str], None] = print) -> dict:
    from dropj.models.evaluate import LARGER_RETURN, RULES, describe_rule, evaluate_preferences, rule_for, rule_source

    if out:
        check_out(out)
    model = load_model(checkpoints, note)
    data = pairs(dataset, data_dir, parse_range(responses))
    rule = rule_for(data.method)
    result = evaluate_preferences(model, data.left, data.right, data.labels, rule=rule)
    other = next(name for name in RULES if name != rule)
    report = {"checkpoints": str(checkpoints), "note": note, "dataset": dataset, "responses": responses,
              "method": data.method, "rule_source": rule_source(data.method), **result.as_dict()}
    log(f"{dataset} ({data.method}), responses {responses}, {result.count} labelled pairs; mean soft "
        f"Bradley-Terry loss {result.mean_loss:.4f}")
    log(f"{'accuracy':>8} {'pairs':>6}  rule")
    for name, said in ((rule, f"{data.method}'s rule, {rule_source(data.method)}"), (other, "the other rule")):
        scored = result.rules[name]
        strict = " (pairs with a strict preference)" if name == LARGER_RETURN else ""
        log(f"{_accuracy(scored.accuracy, 8)} {scored.count:6d}  {describe_rule(name)}{strict}: {said}")
    titles = {name: describe_rule(name) + ("*" if name == rule else "") for name in (rule, other)}
    log(f"{'label':>6} {'pairs':>6} {titles[rule]} {titles[other]} {'loss':>8} {'mean P(left)':>13}")
    for label, row in result.per_label.items():
        log(f"{label:6g} {row.count:6d} {_accuracy(row.by_rule[rule].accuracy, len(titles[rule]))} "
            f"{_accuracy(row.by_rule[other].accuracy, len(titles[other]))} {row.mean_loss:8.4f} "
            f"{row.mean_p_left:13.3f}")
    log(f"* {data.method}'s rule; '-': no pair of this label is scored by the rule (docs/training.md)")
    if out:
        from dropj.converters.store.durable import write_atomically

        body = json.dumps(report, indent=1).encode()
        write_atomically(Path(out), lambda f: f.write(body), force=True)
        log(f"wrote {out}")
    return report
