"""Checkpoint I/O in the authors' two formats (DATA_FORMATS.md 7.3 and 7.5).

* Preference reward ensembles: one file per member, ``reward_model_{m}_{note}.pt`` for m = 0, 1, 2,
  each a plain ``OrderedDict`` state_dict (``torch.save(member.state_dict(), ...)``). The released
  files' storages are tagged ``'cuda:0'``; they are mapped to the CPU on load.
* VAE, MDN-RNN and sparse reward models: one file holding
  ``{'model_state': model.state_dict(), 'optimizer_state': Adam.state_dict()}``.

Checkpoints are untrusted input: every load is first checked by `check_file` (size, archive members, and a
symbolic scan of ``data.pkl``: no container reached twice, bounded depth and values), and only then
``torch.load(path, map_location='cpu', weights_only=True)``, which only rebuilds tensors and plain
containers and never runs code from the file. A refusal is one line of ours, naming the file; torch's
advice to retry with ``weights_only=False`` is never passed on. Every mismatch
against the model (missing keys, unexpected keys, shape mismatches) is reported at once, naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from collections.abc import Mapping

import torch
from torch import nn

from .reward import PreferenceRewardEnsemble

__all__ = ["CheckpointError", "preference_member_path", "load_preference_members", "save_preference_members",
           "load_checkpoint", "save_checkpoint", "read_checkpoint", "read_state_dict", "state_dict_differences"]

PathLike = str | os.PathLike


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read or does not fit the model; the message names the file."""


# A checkpoint is untrusted input: it is size-checked before torch reads it (`check_file`).
MAX_CHECKPOINT_BYTES = 4 << 30  # the largest of the paper's models with Adam state is about 310 MB
MAX_PICKLE_BYTES = 16 << 20  # the archive's data.pkl: about 1 kB for a state_dict, a few kB with Adam
MAX_PICKLE_DEPTH = 64
MAX_REASON_CHARS = 200  # of torch's refusal, quoted in ours
MAX_PICKLE_ITEMS = 1_000_000  # values data.pkl makes: a state_dict with Adam state makes a few hundred
MAX_KEY_CHARS = 80  # of one key of a tensor's key path, quoted in a refusal


def check_file(path: Path, limit: int = MAX_CHECKPOINT_BYTES) -> None:
    """Refuses, before loading, a checkpoint that could cost more memory or time than its size.

    torch's zip format stores every member uncompressed: a compressed member (which could inflate
    to gigabytes) is refused, so memory is bounded by the file's size, itself at most `limit`. The
    archive's data.pkl is scanned first (`_scan_pickle`): no container reached twice (shared or
    cyclic, of any kind), no nesting deeper than MAX_PICKLE_DEPTH, at most MAX_PICKLE_ITEMS values.
    """
    import stat
    import zipfile

    try:
        st = os.stat(path)
    except OSError:
        raise CheckpointError(f"{path}: checkpoint file not found") from None
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(f"{path}: not a regular file")
    if st.st_size > limit:
        raise CheckpointError(f"{path}: {st.st_size:,} bytes, more than the {limit:,} a checkpoint may have")
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            if len(members) > 100_000:
                raise CheckpointError(f"{path}: {len(members):,} archive members")
            for member in members:
                if member.compress_type != zipfile.ZIP_STORED or member.file_size != member.compress_size:
                    raise CheckpointError(f"{path}: member {member.filename[:80]} is compressed; torch writes "
                                          "checkpoints uncompressed, so this one was not written by torch.save")
            pickles = [m for m in members if m.filename.endswith("/data.pkl") or m.filename == "data.pkl"]
            if len(pickles) != 1:
                raise CheckpointError(f"{path}: expected one data.pkl in the archive, found {len(pickles)}")
            if pickles[0].file_size > MAX_PICKLE_BYTES:
                raise CheckpointError(f"{path}: data.pkl has {pickles[0].file_size:,} bytes; a state_dict needs "
                                      f"far less than {MAX_PICKLE_BYTES:,}")
            _scan_pickle(archive.read(pickles[0]), path)
    except zipfile.BadZipFile:
        raise CheckpointError(f"{path}: not a torch checkpoint (torch.save writes a zip archive)") from None


# The kinds of value the scan tells apart, by the opcode that made it. A container is anything whose
# contents a reader walks (hashes, copies, compares): a value of these kinds may be reached once only.
_CONTAINERS = {"EMPTY_LIST": "list", "LIST": "list", "EMPTY_DICT": "dict", "DICT": "dict",
               "TUPLE": "tuple", "TUPLE1": "tuple", "TUPLE2": "tuple", "TUPLE3": "tuple",
               "EMPTY_SET": "set", "FROZENSET": "set"}
# Opcodes that fill the container below their arguments (the container stays on the stack, itself).
_FILLS = frozenset({"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"})


# What a call (REDUCE, NEWOBJ) builds, by the global it calls: torch's own rebuilders make tensors, sizes
# and devices (leaves a reader does not walk); these make containers; anything else is an "object"
# (torch's weights_only loader refuses most of them anyway) and may not be shared either.
_LEAF_MODULES = ("torch",)
_CALLED_CONTAINERS = {"collections OrderedDict": "dict", "builtins set": "set", "__builtin__ set": "set",
                      "builtins frozenset": "set", "__builtin__ frozenset": "set"}
_STRINGS = frozenset({"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE",
                      "BINUNICODE8"})


class _Value:
    """What the scan knows of one value: how deep it nests, whether it is a container (its kind, else
    None), whether it is referenced more than once (a memo GET or DUP), and a string's or global's text."""

    __slots__ = ("depth", "kind", "shared", "text")

    def __init__(self, depth: int, kind: str | None, text: str = "") -> None:
        self.depth, self.kind, self.shared, self.text = depth, kind, False, text


def _called_kind(callable_: _Value) -> str | None:
    if callable_.text.split(" ", 1)[0].split(".", 1)[0] in _LEAF_MODULES:
        return None
    return _CALLED_CONTAINERS.get(callable_.text, "object")


def _scan_pickle(data: bytes, path: Path, max_items: int = MAX_PICKLE_ITEMS) -> None:
    """A symbolic pass over data.pkl's opcodes (nothing is built): depth, sharing and item count.

    torch.save memoises what it pickles, so a forged file can reach one container many times: `x = [x, x]`
    40 deep is 40 lists on disk and 2**40 paths for whatever walks it (torch's optimizer-state loading
    hung at 4.9 GiB), and a cycle never ends. torch.save's own files share only strings, globals and
    tensors, so a container (list, dict, tuple, set, an object built by any call but torch's own, or one
    filled after it was shared) reached a second time is refused, whatever its kind; the values made in
    all are at most `max_items`.
    """
    import pickletools

    stack: list[_Value] = []
    metastack: list[list[_Value]] = []
    memo: dict[int, _Value] = {}
    items = 0

    def shared(value: _Value, where: str) -> None:
        raise CheckpointError(f"{path}: data.pkl reaches one {value.kind} twice ({where}); torch.save never "
                              "shares a container, and walking a shared or cyclic one can take forever")

    try:
        for op, arg, _ in pickletools.genops(data):
            name = op.name
            if name == "MARK":
                metastack.append(stack)
                stack = []
                continue
            if name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
                memo[len(memo) if name == "MEMOIZE" else arg] = stack[-1]
                continue
            if name in ("GET", "BINGET", "LONG_BINGET", "DUP"):
                value = memo[arg] if name != "DUP" else stack[-1]
                if value.kind is not None:
                    shared(value, f"memo {arg}" if name != "DUP" else "DUP")
                value.shared = True
                stack.append(value)
                continue
            before = list(op.stack_before)
            popped: list[_Value] = []
            if pickletools.markobject in before:
                popped, stack = stack, metastack.pop()
                before = before[:before.index(pickletools.markobject)]
            if before:
                popped = stack[len(stack) - len(before):] + popped
                del stack[len(stack) - len(before):]
            if name in _FILLS:
                # popped = [container, items...]: the container stays itself, now holding the items.
                target, contents = popped[0], popped[1:]
                if target.kind is None:
                    if target.shared:
                        target.kind = "container"
                        shared(target, "filled after it was shared")
                    target.kind = "container"
                target.depth = max(target.depth, 1 + max((v.depth for v in contents), default=-1))
                if target.depth > MAX_PICKLE_DEPTH:
                    raise CheckpointError(f"{path}: data.pkl nests deeper than {MAX_PICKLE_DEPTH} levels")
                stack.append(target)
                continue
            depth = 1 + max((v.depth for v in popped), default=-1)
            if depth > MAX_PICKLE_DEPTH:
                raise CheckpointError(f"{path}: data.pkl nests deeper than {MAX_PICKLE_DEPTH} levels")
            items += len(op.stack_after)
            if items > max_items:
                raise CheckpointError(f"{path}: data.pkl makes more than the {max_items:,} values a checkpoint "
                                      "may have (a state_dict with Adam state makes a few hundred)")
            kind, text = _CONTAINERS.get(name), ""
            if name in ("TUPLE", "TUPLE1", "TUPLE2", "TUPLE3") and not popped:
                kind = None  # the empty tuple is an atom
            elif name in ("REDUCE", "NEWOBJ", "NEWOBJ_EX"):
                kind = _called_kind(popped[0])
            elif name in ("INST", "OBJ"):
                kind = "object"
            elif name in _STRINGS:
                text = str(arg)
            elif name == "GLOBAL":
                text = str(arg)
            elif name == "STACK_GLOBAL":
                text = " ".join(v.text for v in popped)
            stack.extend(_Value(depth, kind, text) for _ in op.stack_after)
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - a corrupt pickle: torch would refuse it too
        raise CheckpointError(f"{path}: data.pkl is not a valid pickle ({type(exc).__name__})") from None


def _load(path: PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    check_file(path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, zipfile errors, ...
        raise CheckpointError(f"{path}: cannot be read as a safe (weights_only) torch checkpoint: "
                              f"{_torch_reason(err)}") from err
    for where, tensor in _tensors(loaded):
        problem = _view_problem(tensor)
        if problem:
            raise CheckpointError(f"{path}: tensor {where} {problem}; torch.save writes no such tensor")
    return loaded


def _tensors(value: Any, where: str = "") -> Any:
    """Yields (key path, tensor) for every tensor in a loaded checkpoint, in file order. `check_file` made sure
    the pickle is a tree (no container reached twice), so this walk visits each value once."""
    todo = [(value, where)]
    while todo:
        value, where = todo.pop()
        if isinstance(value, torch.Tensor):
            yield where, value
        elif isinstance(value, (Mapping, list, tuple)):
            items = value.items() if isinstance(value, Mapping) else enumerate(value)
            todo.extend(reversed([(item, _key_path(where, key)) for key, item in items]))


def _key_path(where: str, key: Any) -> str:
    """``optimizer_state['state'][0]['exp_avg']``: a top-level string key bare, the rest as subscripts."""
    if not where and isinstance(key, str):
        return key if len(key) <= MAX_KEY_CHARS else key[:MAX_KEY_CHARS] + "..."
    return f"{where}[{_short(key)}]"


def _short(value: Any) -> str:
    """A shape, strides or key as quoted in a refusal: at most MAX_KEY_CHARS characters of its repr."""
    text = repr(value)
    return text if len(text) <= MAX_KEY_CHARS else text[:MAX_KEY_CHARS] + "..."


def _view_problem(tensor: torch.Tensor) -> str | None:
    """Why ``tensor`` is not a plain view of its own storage, or None.

    torch.save stores a tensor as its storage's bytes plus size, strides and offset, and torch.load rebuilds
    it as that view without copying. A real tensor, or any view of one that a state_dict holds (transposed,
    sliced, tied to another), reads each stored element at most once; a forged one with a stride of 0 or
    overlapping strides repeats a few stored bytes into as many elements as it likes (one element expanded to
    8000 x 8000 is a 3.7 kB file), and the first copy (an optimizer's cast to its parameter's dtype, ``.to()``,
    ``.contiguous()``) allocates them all. So memory stays bounded by the file's size only if every tensor's
    elements are distinct bytes of its storage: that is checked here, the storage's own bytes are in the file.
    """
    if type(tensor) not in (torch.Tensor, nn.Parameter):
        return f"is a {type(tensor).__name__}, not a plain tensor"
    if tensor.device.type != "cpu":
        return f"is on the {tensor.device.type} device, not on the CPU every checkpoint is mapped to"
    if tensor.layout != torch.strided:
        return f"has the {tensor.layout} layout, not the dense (strided) one"
    shape, strides = tuple(tensor.shape), tensor.stride()
    dims = f"(shape {_short(shape)}, strides {_short(strides)})"
    if tensor.numel() == 0:
        return None
    storage_bytes = tensor.untyped_storage().nbytes()
    stored = f"its {tensor.numel():,} elements of {tensor.element_size()} bytes on a storage of {storage_bytes:,}"
    # Dimensions of size 1 never step, so their stride is free (torch.save keeps what the view had).
    reach = 0  # the furthest element the smaller strides reach; the next stride must step past it
    for stride, size in sorted((stride, size) for size, stride in zip(shape, strides) if size > 1):
        if stride <= 0:
            return (f"{dims} has stride {stride} on a dimension of {size}: {stored} "
                    "repeat stored ones instead of being stored")
        if stride <= reach:
            return (f"{dims} overlaps itself: {stored} read stored ones more than "
                    "once instead of being stored")
        reach += (size - 1) * stride
    if tensor.numel() * tensor.element_size() > storage_bytes:
        return f"{dims} has more bytes than its storage: {stored}"
    if (tensor.storage_offset() + reach + 1) * tensor.element_size() > storage_bytes:
        return f"{dims} at offset {tensor.storage_offset():,} reaches past the {storage_bytes:,} bytes of its storage"
    return None


def _check_optimizer_state(state: Any, optimizer: torch.optim.Optimizer, path: PathLike) -> None:
    """Refuses, before ``optimizer.load_state_dict`` casts it, an optimizer state that does not fit ``optimizer``.

    torch pairs the saved parameter ids with the optimizer's parameters by position and casts every tensor of
    a parameter's state to that parameter's dtype, without comparing shapes: a wrong shape loaded silently and
    failed at the first step, and one stored storage named by many state tensors became as many copies. So
    each tensor of a parameter's state must have the parameter's shape (``step``, a count, one element), and
    no two tensors of the optimizer's state share a storage (torch's optimizers allocate each on its own).
    """
    groups = state.get("param_groups") if isinstance(state, Mapping) else None
    if (not isinstance(state, Mapping) or not isinstance(state.get("state"), Mapping)
            or not isinstance(groups, (list, tuple))
            or not all(isinstance(g, Mapping) and isinstance(g.get("params"), (list, tuple)) for g in groups)):
        raise CheckpointError(f"{path}: optimizer_state is not an optimizer's state_dict (a mapping of 'state' "
                              "and 'param_groups', each group with its 'params')")
    saved_sizes = [len(g["params"]) for g in groups]
    sizes = [len(g["params"]) for g in optimizer.param_groups]
    if saved_sizes != sizes:
        raise CheckpointError(f"{path}: optimizer_state has parameter groups of {_short(saved_sizes)} parameters, "
                              f"the optimizer {_short(sizes)}")
    try:
        params = {saved: param for saved_group, group in zip(groups, optimizer.param_groups)
                  for saved, param in zip(saved_group["params"], group["params"])}
    except TypeError:  # an unhashable id: torch's own optimizers number their parameters
        raise CheckpointError(f"{path}: optimizer_state's param_groups name parameters by something other than "
                              "numbers") from None
    owners: dict[int, str] = {}
    for where, tensor in _tensors(state, "optimizer_state"):
        storage = tensor.untyped_storage()
        if storage.nbytes():
            other = owners.setdefault(storage.data_ptr(), where)
            if other != where:
                raise CheckpointError(f"{path}: tensor {where} shares its storage with {other}; each tensor of "
                                      "an optimizer's state has its own")
    keys = _state_keys(optimizer)
    for saved, value in state["state"].items():
        param = params.get(saved)
        if param is None:
            continue  # torch keeps the state of an id no parameter has as it is, without casting it
        where = _key_path("optimizer_state['state']", saved)
        given = set(value) if isinstance(value, Mapping) else None
        if value and (given != keys or not all(isinstance(item, torch.Tensor) for item in value.values())):
            raise CheckpointError(f"{path}: {where}: expected the tensors {sorted(keys)} that "
                                  f"{type(optimizer).__name__} keeps for a parameter, got "
                                  f"{sorted(map(str, given))[:8] if given is not None else type(value).__name__}")
        for key, item in value.items() if isinstance(value, Mapping) else [(None, value)]:
            for at, tensor in _tensors(item, where if key is None else _key_path(where, key)):
                if key == "step":
                    if tensor.numel() != 1:
                        raise CheckpointError(f"{path}: tensor {at}: expected one element (the step count), "
                                              f"got shape {_short(tuple(tensor.shape))}")
                elif tensor.shape != param.shape:
                    raise CheckpointError(f"{path}: tensor {at}: expected shape {tuple(param.shape)} (the "
                                          f"parameter's), got {_short(tuple(tensor.shape))}")


def _state_keys(optimizer: torch.optim.Optimizer) -> set[str]:
    """The keys `optimizer` keeps for each parameter it has stepped (Adam: step, exp_avg, exp_avg_sq, and
    max_exp_avg_sq with amsgrad): learnt from one step of its own kind on a one-element parameter."""
    probe = torch.nn.Parameter(torch.zeros(1))
    other = type(optimizer)([probe])
    other.param_groups[0].update({k: v for k, v in optimizer.param_groups[0].items() if k != "params"})
    probe.grad = torch.zeros(1)
    other.step()
    return set(other.state[probe])


def _torch_reason(err: Exception) -> str:
    """torch's reason for refusing a file, in one bounded line. Its message also advises retrying with
    ``weights_only=False``, which would run whatever the file names: that advice is never passed on."""
    advice = ("weights_only", "weights only", "trusted", "documentation")
    lines = [line.strip().removeprefix("WeightsUnpickler error:").strip() for line in str(err).splitlines()]
    reasons = [line for line in lines if line and not any(word in line.lower() for word in advice)]
    reason = reasons[0] if reasons else ""
    reason = reason[:MAX_REASON_CHARS] + ("..." if len(reason) > MAX_REASON_CHARS else "")
    return f"{type(err).__name__}: {reason}" if reason else type(err).__name__


def state_dict_differences(state: Mapping, model: nn.Module) -> tuple[list[str], list[str], list[str]]:
    """(missing keys, unexpected keys, shape mismatches) of the state_dict ``state`` against ``model``'s: all
    empty when it fits."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = []
    for k, ref in expected.items():
        if k in state:
            got = state[k]
            if not isinstance(got, torch.Tensor):
                mismatched.append(f"{k}: expected a tensor of shape {tuple(ref.shape)}, got {type(got).__name__}")
            elif got.shape != ref.shape:
                mismatched.append(f"{k}: expected shape {tuple(ref.shape)}, got {tuple(got.shape)}")
    return missing, unexpected, mismatched


def _check_state_dict(state: Any, model: nn.Module, path: PathLike, what: str = "state_dict") -> None:
    """Raise one CheckpointError listing every difference between ``state`` and ``model.state_dict()``."""
    if not isinstance(state, Mapping) or not all(isinstance(k, str) for k in state):
        raise CheckpointError(f"{path}: expected the {what} to be a mapping of parameter names to tensors, "
                              f"got {type(state).__name__}")
    missing, unexpected, mismatched = state_dict_differences(state, model)
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    if mismatched:
        problems.append("shape mismatches: " + "; ".join(mismatched))
    if problems:
        raise CheckpointError(f"{path}: {what} does not fit {type(model).__name__}: " + "; ".join(problems))


def read_state_dict(path: PathLike) -> dict[str, torch.Tensor]:
    """Safely read a plain state_dict file (CPU tensors), e.g. one preference member."""
    state = _load(path)
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: expected a state_dict (a mapping), got {type(state).__name__}")
    return dict(state)


def preference_member_path(directory: PathLike, m: int, note: str) -> Path:
    """``{directory}/reward_model_{m}_{note}.pt``, the authors' file name (``reward_model_pref.py:494-502``)."""
    return Path(directory) / f"reward_model_{m}_{note}.pt"


def load_preference_members(directory: PathLike, note: str, members: int = 3) -> PreferenceRewardEnsemble:
    """Load the authors' per-member files into a `PreferenceRewardEnsemble` on the CPU.

    directory: e.g. ``models/carracing/pref_reward_models``; note: e.g. ``'GUI_s20_just_resp500'``.
    The input width (547 or 2115) is read from the first member's ``0.weight``; hidden size and depth
    are the authors' (256, 3), and every member is checked against them.
    """
    paths = [preference_member_path(directory, m, note) for m in range(members)]
    absent = [str(p) for p in paths if not p.is_file()]
    if absent:
        raise CheckpointError(f"preference reward model {note!r} in {directory}: missing member files {absent}")
    states = [read_state_dict(p) for p in paths]
    first = states[0].get("0.weight")
    if not isinstance(first, torch.Tensor) or first.dim() != 2:
        raise CheckpointError(f"{paths[0]}: no 2-d '0.weight' to read the input width from; keys {list(states[0])}")
    model = PreferenceRewardEnsemble(input_dim=int(first.shape[1]), members=members)
    for m, (path, state) in enumerate(zip(paths, states)):
        _check_state_dict(state, model.member(m), path)
        model.member(m).load_state_dict(state)
    return model


def save_preference_members(model: PreferenceRewardEnsemble, directory: PathLike, note: str) -> list[Path]:
    """Write ``reward_model_{m}_{note}.pt`` (one state_dict per member, the authors' format); returns the paths.

    Tensors are written from wherever the model lives (CPU files load on any machine).
    """
    if not isinstance(model, PreferenceRewardEnsemble):
        raise TypeError(f"model must be a PreferenceRewardEnsemble, got {type(model).__name__}")
    Path(directory).mkdir(parents=True, exist_ok=True)
    paths = []
    for m in range(len(model.members)):
        path = preference_member_path(directory, m, note)
        torch.save(model.member(m).state_dict(), path)
        paths.append(path)
    return paths


def save_checkpoint(model: nn.Module, optimizer: torch.optim.Optimizer | None, path: PathLike,
                    extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``{'model_state': ..., 'optimizer_state': ...}`` (the authors' ``PyTorchModel.save``).

    With ``optimizer=None`` a fresh ``Adam(model.parameters())`` state is stored, so the file still has
    both keys the authors' ``load`` requires. `extra` adds further keys (e.g. the training loop's
    ``'step'``); they must be tensors or plain containers so that a ``weights_only`` load reads them,
    and the authors' ``load`` ignores them.
    """
    if optimizer is None:
        optimizer = torch.optim.Adam(model.parameters())
    clash = sorted(set(extra or {}) & {"model_state", "optimizer_state"})
    if clash:
        raise ValueError(f"extra must not replace the checkpoint's own keys {clash}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model_state": model.state_dict(), "optimizer_state": optimizer.state_dict(), **(extra or {})},
               path)
    return path


def read_checkpoint(path: PathLike) -> dict:
    """The whole ``{'model_state', 'optimizer_state', ...}`` mapping of a checkpoint, read safely on the CPU."""
    ckpt = _load(path)
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(f"{path}: not a {{'model_state', 'optimizer_state'}} checkpoint; "
                              f"found {type(ckpt).__name__}")
    return dict(ckpt)


def load_checkpoint(model: nn.Module, path: PathLike,
                    optimizer: torch.optim.Optimizer | None = None) -> dict | None:
    """Load a ``{'model_state', 'optimizer_state'}`` checkpoint into ``model`` (strictly, on the CPU).

    The model must be constructed with the checkpoint's hyper-parameters (e.g. ``ConvVAE.for_env(...)``).
    If ``optimizer`` is given its state is restored too (the authors' ``load`` restores Adam). Returns the
    stored optimizer state dict (or None when the file has none).
    """
    ckpt = _load(path)
    if not isinstance(ckpt, Mapping) or "model_state" not in ckpt:
        keys = list(ckpt)[:10] if isinstance(ckpt, Mapping) else type(ckpt).__name__
        hint = (" (this looks like a plain state_dict, e.g. a preference member: use load_preference_members)"
                if isinstance(ckpt, Mapping) and all(isinstance(v, torch.Tensor) for v in ckpt.values()) else "")
        raise CheckpointError(f"{path}: not a {{'model_state', 'optimizer_state'}} checkpoint; found {keys}{hint}")
    _check_state_dict(ckpt["model_state"], model, path, "model_state")
    model.load_state_dict(ckpt["model_state"])
    opt_state = ckpt.get("optimizer_state")
    if optimizer is not None:
        if opt_state is None:
            raise CheckpointError(f"{path}: has no 'optimizer_state' to restore into the optimizer")
        _check_optimizer_state(opt_state, optimizer, path)
        try:
            optimizer.load_state_dict(opt_state)
        except (ValueError, KeyError, TypeError) as err:
            raise CheckpointError(f"{path}: optimizer_state does not fit the optimizer: {err}") from err
    return opt_state
