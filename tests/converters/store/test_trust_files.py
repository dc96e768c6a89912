"""Issue 9: files from outside (release files, built datasets someone shared, checkpoints) cannot hurt the user,
and nothing the suite writes is left half-written or written where the user did not ask."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import factory

from factory import REPO
import dropj_datasets  # noqa: F401
from factory import fuzzing
from factory import legacy as legacy_factory
from dropj.converters.store import durable
from dropj.converters.roundtrip import export, verify
from dropj.converters.release import kinds
from dropj_datasets import builder as builder_lib
from dropj_datasets import schema
from dropj_datasets.schema import DataError

REAL = schema.spec_for("dropj_carracing", "real")
DREAM = schema.spec_for("dropj_carracing", "dream")
FORGED = dict(fuzzing.attacks())["forged-object-dtype"]
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", NO_GCE_CHECK="true")


def _build(manual, data_dir, config="real", dataset="dropj_carracing"):
    return factory.build(f"{dataset}/{config}", manual, data_dir)


def _dropj(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dropj_datasets.app", *map(str, args)], capture_output=True,
                          text=True, env=ENV, cwd=cwd, timeout=300)


# --- release files that attack ------------------------------------------------------------------------------

@pytest.mark.parametrize("config,name", [
    ("real", REAL.sources.episodes),  # read in the build's reader process
    ("dream", DREAM.sources.episodes),
    ("preferences_drop", "responses_user26_s20_q600_drop.pkl"),
    ("queries", "queries_s20/data.pkl"),
])
def test_a_forged_dtype_in_any_release_file_fails_the_build_with_one_clear_error(tmp_path, config, name):
    """It made numpy free an attacker's pointer: the reader process died (-11), or the build segfaulted."""
    manual = tmp_path / "m"
    (manual / name).parent.mkdir(parents=True, exist_ok=True)
    (manual / name).write_bytes(FORGED)
    if config == "preferences_drop":  # needs its queries too
        (manual / "queries_s20").mkdir()
        (manual / "queries_s20" / "data.pkl").write_bytes(pickle.dumps({}, protocol=4))
    with pytest.raises(DataError, match=r"numpy dtype 'V8' \(only the plain numeric and bool dtypes"):
        _build(manual, tmp_path / "d", config)
    assert not list((tmp_path / "d").rglob("dataset_info.json"))


@pytest.mark.slow
def test_tfds_build_and_dropj_verify_of_a_forged_file_exit_with_one_line(tmp_path):
    manual, data = tmp_path / "m", tmp_path / "d"
    legacy_factory.make_real_source(manual, REAL, lengths=(3, 2))
    _build(manual, data)
    (manual / "nested" / REAL.sources.episodes).write_bytes(FORGED)
    done = subprocess.run([str(Path(sys.executable).parent / "tfds"), "build", str(REPO / "dropj_datasets" /
                           "dropj_carracing"), "--config", "real", "--manual_dir", str(manual), "--data_dir",
                           str(tmp_path / "d2")], capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode not in (-11, 139, -6) and done.returncode != 0
    assert "numpy dtype 'V8'" in done.stderr
    done = _dropj("verify", "dropj_carracing/real", "--data_dir", data, "--manual_dir", manual, "-q")
    assert done.returncode == 2, done
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("dropj verify: error: ") and "numpy dtype 'V8'" in line


def test_the_reader_process_dies_with_its_build():
    """After a SIGKILL of the build, its reader process kept spinning at 100 % in a 2**100 hash."""
    code = ("import os, sys, time, multiprocessing\n"
            "from dropj.converters.build import pipeline\n"
            "def spin(parent):\n    pipeline._die_with_parent(parent)\n    while True: pass\n"
            "p = multiprocessing.get_context('fork').Process(target=spin, args=(os.getpid(),))\n"
            "p.start(); print(p.pid, flush=True); time.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=ENV)
    child = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.05)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_a_deflated_huge_video_is_refused_by_its_size_before_reading(tmp_path, monkeypatch):
    """A deflated 3 GiB mp4 cost 3.8-6.7 GB; now a video is refused by its size in the central directory."""
    from dropj.converters.release import preferences as feedback

    monkeypatch.setattr(feedback, "MAX_VIDEO_BYTES", 1 << 20)
    spec = schema.spec_for("dropj_carracing", "queries")
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(tmp_path / "q.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("queries_s20/data.pkl", pickle.dumps({"0.mp4": {"segment1": rng.standard_normal((20, 547)),
                                                                   "segment2": rng.standard_normal((20, 547))}}))
        z.writestr("queries_s20/0.mp4", bytes(8 << 20))  # 8 MB of zeros, 8 kB deflated
    _, examples = feedback.prepare_queries(spec, str(tmp_path))
    with pytest.raises(DataError, match=r"queries_s20/0.mp4: 8,388,608 bytes, more than the 1,048,576 accepted"):
        next(examples)


# --- silent changes, now kept bit for bit or refused ----------------------------------------------------------

def _real(length=3, seed=0):
    return legacy_factory.real_episode(REAL, length, np.random.default_rng(seed), "truncated")


def test_repeat_count_beyond_int32_is_refused_not_wrapped():
    from dropj.converters.release import preferences as feedback

    spec = schema.spec_for("dropj_carracing", "preferences_drop")
    entry = {"video": "0.mp4", "responses": "Skipped", "repeat_count": 2**31, "total_time": 1.0}
    with pytest.raises(DataError, match=r"repeat_count': expected an int in \[0, 2147483647\], got 2147483648"):
        feedback.validate_response(entry, spec, file="r.pkl", index=0)


def test_an_info_that_is_not_a_plain_dict_is_refused():
    import collections

    from dropj.converters.release import episodes

    episode = _real()
    episode[1] = episode[1][:5] + (collections.defaultdict(list),)
    with pytest.raises(DataError, match=r"step 1, field 'info': expected dict, got defaultdict"):
        episodes.from_legacy(episode, REAL, file="raw.pkl", episode=0)


def test_minus_zero_done_before_the_last_step_is_refused():
    from dropj.converters.release import episodes

    episode = _real()
    episode[0] = episode[0][:4] + (-0.0,) + episode[0][5:]
    with pytest.raises(DataError, match=r"step 0, field 'done': expected 0.0 before the last step, got -0.0"):
        episodes.from_legacy(episode, REAL, file="raw.pkl", episode=0)


def test_an_all_nan_action_episode_builds_and_exports_bit_for_bit(tmp_path):
    manual = tmp_path / "m"
    episode = _real(4)
    episode = [step[:1] + (np.full(3, np.nan),) + step[2:] for step in episode]
    legacy_factory.write_pickle(manual / REAL.sources.episodes, [episode, _real(2, 1)], 5)
    _build(manual, tmp_path / "d")
    [path] = export.export("dropj_carracing/real", tmp_path / "out", data_dir=str(tmp_path / "d"),
                              log=lambda s: None)
    from dropj.converters.release.episodes import compare

    assert compare([episode, _real(2, 1)], pickle.loads(path.read_bytes())) == []


def test_a_nan_latent_present_in_both_dream_files_is_the_same_value(tmp_path):
    manual = tmp_path / "m"
    made = legacy_factory.make_dream_source(manual, DREAM, lengths=(3, 2))
    for key in ("plain", "scaled"):
        made[key][0][1][0][5] = np.nan  # step 1's prev_obs, in both files
        made[key][0][0][3][5] = np.nan  # and step 0's obs, the same state
        legacy_factory.write_pickle(manual / (DREAM.sources.episodes if key == "plain" else DREAM.sources.scaled),
                                    made[key], 4)
    _build(manual, tmp_path / "d", "dream")
    [report, *_] = verify.verify("dropj_carracing/dream", manual, data_dir=str(tmp_path / "d"), log=lambda s: None)
    assert report.ok, report.mismatches


def test_an_empty_release_list_is_named(tmp_path):
    legacy_factory.write_pickle(tmp_path / "m" / REAL.sources.episodes, [], 5)
    with pytest.raises(DataError, match=rf"{REAL.sources.episodes}: holds nothing to build"):
        _build(tmp_path / "m", tmp_path / "d")


def test_the_episode_index_cap_names_the_file():
    with pytest.raises(DataError, match=r"raw.pkl: item 16384 is beyond the 16,384 items one file may hold"):
        kinds.example_key(16384, "raw.pkl")


# --- built datasets are input too -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("built")
    legacy_factory.make_dream_source(root / "m", DREAM, lengths=(3, 2))
    _build(root / "m", root / "d", "dream")
    return root / "d" / "dropj_carracing" / "dream" / str(dropj_datasets.DropjCarracing.VERSION)


def _copy(built: Path, tmp_path: Path) -> Path:
    target = tmp_path / "shared" / "dream" / "1.0.0"
    shutil.copytree(built, target)
    return target


def _edit_metadata(directory: Path, change) -> None:
    path = directory / "metadata.json"
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize("name", ["/tmp/dropj-escape-test.pkl", "../../escape.pkl", "sub/../../escape.pkl",
                                  "authorized_keys"])
def test_export_takes_file_names_from_metadata_only_if_they_are_the_schemas(built, tmp_path, name):
    """`initial_state_files` keys that are absolute paths or contain '..' were written wherever they said."""
    shared = _copy(built, tmp_path)
    _edit_metadata(shared, lambda m: m["initial_state_files"].update(
        {name: m["initial_state_files"].pop("default_init_obs.pkl")}))
    with pytest.raises(DataError, match="is not one of this config's release files"):
        export.export(str(shared), tmp_path / "out", log=lambda s: None)
    assert not Path("/tmp/dropj-escape-test.pkl").exists() and not (tmp_path / "escape.pkl").exists()
    assert not list((tmp_path / "out").rglob("*.pkl"))


def test_an_output_folder_that_is_a_symlink_out_of_out_is_refused(built, tmp_path):
    out, victim = tmp_path / "out", tmp_path / "victim"
    out.mkdir()
    victim.mkdir()
    spec = schema.spec_for("dropj_carracing", "queries")
    (out / spec.folder).symlink_to(victim)
    from dropj.converters.store import dataset_dir

    with pytest.raises(DataError, match="outside"):
        dataset_dir.resolve_under(out, f"{spec.folder}/0.mp4")


def test_export_never_follows_a_planted_partial_and_never_replaces_without_force(built, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    for name in (DREAM.sources.episodes, "default_init_obs.pkl"):  # the old writer followed NAME.partial
        (out / f"{name}.partial").symlink_to(victim)
        (out / f".{name}.x{durable.PARTIAL_SUFFIX}").symlink_to(victim)
    written = export.export(str(built), out, log=lambda s: None)
    assert victim.read_text() == "precious"
    assert {p.name for p in written} == {DREAM.sources.episodes, DREAM.sources.scaled, "default_init_obs.pkl"}
    before = {p: p.stat().st_mtime_ns for p in written}
    with pytest.raises(DataError, match="already exist; pass --force to replace them"):
        export.export(str(built), out, log=lambda s: None)
    assert {p: p.stat().st_mtime_ns for p in written} == before
    export.export(str(built), out, force=True, log=lambda s: None)


def test_a_multi_file_export_writes_its_manifest_last(built, tmp_path):
    out = tmp_path / "out"
    written = export.export(str(built), out, log=lambda s: None)
    [manifest] = out.glob("MANIFEST-*.json")
    body = json.loads(manifest.read_text())
    assert body["complete"] and {f["name"] for f in body["files"]} == {p.name for p in written}
    import hashlib

    for entry in body["files"]:
        assert hashlib.sha256((out / entry["name"]).read_bytes()).hexdigest() == entry["sha256"]
    assert manifest.stat().st_mtime_ns >= max(p.stat().st_mtime_ns for p in written)


_FULL_DISK = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
from dropj_datasets.app import cli
sys.exit(cli.main(["export", sys.argv[1], "--out", sys.argv[2]]))
"""


@pytest.mark.slow
def test_a_failed_export_leaves_no_partial_file_and_no_manifest(built, tmp_path):
    """Disk full (a file-size limit here): the 50 MB .partial was left behind; now nothing is, and it says so."""
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-c", _FULL_DISK, str(built), str(out)], capture_output=True, text=True,
                          env=ENV, timeout=300)
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("dropj export: error: ") and "File too large" in line
    assert not [p for p in out.rglob("*") if p.is_file() and p.stat().st_size > 20000 - 1]
    assert not list(out.rglob(f"*{durable.PARTIAL_SUFFIX}")) and not list(out.glob("MANIFEST-*"))


def test_features_json_naming_another_class_is_refused_before_tfds_imports_it(built, tmp_path):
    """TFDS imports the module a features.json names: code from a shared dataset would run."""
    shared = _copy(built, tmp_path)
    plugin = tmp_path / "plugins"
    plugin.mkdir()
    marker = tmp_path / "MARKER"
    (plugin / "evilfeature.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    text = (shared / "features.json").read_text()
    (shared / "features.json").write_text(text.replace(
        "tensorflow_datasets.core.features.tensor_feature.Tensor", "evilfeature.Tensor", 1))
    done = subprocess.run([sys.executable, "-m", "dropj_datasets.app", "export", str(shared), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=300,
                          env=dict(ENV, PYTHONPATH=str(plugin)))
    assert done.returncode == 2 and "features.json: does not match the features of dropj_carracing/dream" in done.stderr
    assert not marker.exists()


def test_a_shard_template_pointing_elsewhere_is_refused(built, tmp_path):
    shared = _copy(built, tmp_path)
    info = json.loads((shared / "dataset_info.json").read_text())
    info["splits"][0]["filepathTemplate"] = "../../../dev/{SHARD_INDEX}"
    (shared / "dataset_info.json").write_text(json.dumps(info))
    with pytest.raises(DataError, match="shard file template"):
        export.export(str(shared), tmp_path / "out", log=lambda s: None)


def test_a_corrupt_shard_gets_one_error_naming_the_file(built, tmp_path):
    shared = _copy(built, tmp_path)
    [shard] = shared.glob("*.tfrecord-*")
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(DataError) as info:
        export.export(str(shared), tmp_path / "out", log=lambda s: None)
    assert str(info.value).startswith(f"{shard}: damaged shard")


# --- builds ------------------------------------------------------------------------------------------------------

def test_a_build_removes_what_a_killed_build_left_and_says_so(tmp_path, capfd):
    manual, data = tmp_path / "m", tmp_path / "d"
    legacy_factory.make_real_source(manual, REAL, lengths=(2,))
    version = str(dropj_datasets.DropjCarracing.VERSION)
    leftover = data / "dropj_carracing" / "real" / f"{version}.incomplete.ABC123"
    leftover.mkdir(parents=True)
    (leftover / "bucket_train_000.tmp").write_bytes(b"x" * 1000)
    other = data / "dropj_carracing" / "real" / f"{version}.incomplete.notours"
    other.mkdir()
    _build(manual, data)
    assert not leftover.exists() and other.exists()  # only TFDS's own naming is touched
    assert f"removed {leftover}" in capfd.readouterr().err


def test_a_second_build_of_the_same_config_is_refused_while_one_runs(tmp_path):
    from dropj.converters.store import durable as durable_lib

    config_dir = tmp_path / "d" / "dropj_carracing" / "real"
    config_dir.mkdir(parents=True)
    fd = durable_lib.take_lock(config_dir / builder_lib.LOCK_FILE, "pid 1 on elsewhere")
    try:
        legacy_factory.make_real_source(tmp_path / "m", REAL, lengths=(2,))
        with pytest.raises(DataError, match=r"another build of it is running \(pid 1 on elsewhere\)"):
            _build(tmp_path / "m", tmp_path / "d")
    finally:
        durable_lib.release_lock(fd)


def test_tfds_internals_the_durable_build_relies_on_exist():
    from tensorflow_datasets.core import utils

    assert callable(utils.incomplete_dir)


# --- checkpoints ----------------------------------------------------------------------------------------------------

def test_a_checkpoint_with_a_compressed_member_is_refused_before_loading(tmp_path):
    """A deflated 3 GiB storage cost 3.8-6.7 GB in torch.load; torch never compresses members."""
    import torch

    from dropj.models import checkpoints

    path = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(10)}, path)
    repacked = tmp_path / "repacked.pt"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(repacked, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info))
    assert checkpoints.read_state_dict(path)["w"].shape == (10,)
    with pytest.raises(checkpoints.CheckpointError, match="is compressed"):
        checkpoints.read_state_dict(repacked)
    with pytest.raises(checkpoints.CheckpointError, match="more than the 1,000 a checkpoint may have"):
        checkpoints.check_file(path, limit=1000)


def test_a_checkpoint_whose_pickle_shares_a_tuple_is_refused(tmp_path):
    import torch

    from dropj.models import checkpoints

    path = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2)}, path)
    bomb = pickle.PROTO + b"\x02" + pickle.EMPTY_DICT + fuzzing._tuple_bomb(60) + pickle.NONE + pickle.SETITEM + \
        pickle.STOP
    hostile = tmp_path / "hostile.pt"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(hostile, "w") as target:
        for info in source.infolist():
            target.writestr(info.filename, bomb if info.filename.endswith("data.pkl") else source.read(info))
    start = time.monotonic()
    with pytest.raises(checkpoints.CheckpointError, match="reaches one tuple twice"):
        checkpoints.read_state_dict(hostile)
    assert time.monotonic() - start < 5


def _shared_list(depth: int) -> list:
    x: list = []
    for _ in range(depth):
        x = [x, x]  # 2**depth paths through `depth` lists: torch.save memoises it, a traversal never ends
    return x


def _cyclic_list() -> list:
    x: list = []
    x.append(x)
    return x


def _cyclic_dict() -> dict:
    x: dict = {}
    x["self"] = x
    return x


def _shared_ordered_dict() -> list:
    import collections

    x = collections.OrderedDict(a=1)  # built by REDUCE, then filled: a container torch.save can share
    return [x, x]


@pytest.mark.parametrize("payload", [
    _shared_list(40), _cyclic_list(), _cyclic_dict(), _shared_ordered_dict(), [{1: 2}] * 2, [frozenset({1})] * 2,
    [{3}] * 2, [(1, 2)] * 2,
], ids=["shared-list-40-deep", "cyclic-list", "cyclic-dict", "shared-ordered-dict", "shared-dict",
        "shared-frozenset", "shared-set", "shared-tuple"])
def test_a_checkpoint_sharing_any_container_is_refused_before_torch(tmp_path, monkeypatch, payload):
    """Issue 22: `x = [x, x]` 40 deep in optimizer_state passed the tuple-only check and `dropj train` hung at
    4.9 GiB. Any container reached twice (shared or cyclic) is refused by the scan; torch is never called."""
    import torch

    from dropj.models import checkpoints

    model = torch.nn.Linear(2, 1)
    path = tmp_path / "checkpoint.pt"
    optimizer_state = {**torch.optim.Adam(model.parameters()).state_dict(), "x": payload}
    torch.save({"model_state": model.state_dict(), "optimizer_state": optimizer_state}, path)

    def never(*args, **kwargs):
        raise AssertionError("torch.load reached with a refused checkpoint")

    monkeypatch.setattr(torch, "load", never)
    with pytest.raises(checkpoints.CheckpointError,
                       match="reaches one (list|dict|tuple|set|object|container) twice") as err:
        checkpoints.load_checkpoint(model, path, torch.optim.Adam(model.parameters()))
    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)


def test_a_checkpoint_with_too_many_items_is_refused(tmp_path):
    import torch

    from dropj.models import checkpoints

    path = tmp_path / "checkpoint.pt"
    torch.save({"w": torch.zeros(2), "many": [None] * (checkpoints.MAX_PICKLE_ITEMS + 1)}, path)
    with pytest.raises(checkpoints.CheckpointError, match=f"more than the {checkpoints.MAX_PICKLE_ITEMS:,} values"):
        checkpoints.check_file(path)


def test_shared_strings_and_tied_tensors_still_load(tmp_path):
    """What torch.save itself shares (strings, globals, one tensor under two names) is not a container."""
    import torch

    from dropj.models import checkpoints

    weight = torch.arange(4.0)
    path = tmp_path / "tied.pt"
    torch.save({"a.weight": weight, "b.weight": weight, "names": ["a", "a"]}, path)
    state = checkpoints.read_state_dict(path)
    assert torch.equal(state["a.weight"], state["b.weight"])


def test_torchs_refusal_is_one_line_of_ours_without_its_advice(tmp_path):
    """torch's weights_only refusal says to retry with weights_only=False, which runs the file's code: never shown."""
    import torch

    from dropj.models import checkpoints

    path = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2), "call": os.getcwd}, path)  # a global torch's safe loader refuses
    with pytest.raises(checkpoints.CheckpointError) as err:
        checkpoints.read_state_dict(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "\n" not in message and "getcwd" in message
    assert "weights_only=False" not in message and "trust" not in message


def _adam_checkpoint(path: Path, edit=None):
    """A real Linear(3, 1) with Adam's state after one step, saved as `dropj train` saves it; `edit` changes the
    optimizer's per-parameter state (a dict of parameter index to {'step', 'exp_avg', 'exp_avg_sq'}) first."""
    import torch

    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.zeros(1, 3)).sum().backward()
    optimizer.step()
    state = optimizer.state_dict()
    if edit is not None:
        edit(state["state"])
    torch.save({"model_state": model.state_dict(), "optimizer_state": state}, path)
    return model


def test_a_stride0_optimizer_tensor_is_refused_before_the_optimizer_materialises_it(tmp_path):
    """Issue 22 review: `torch.zeros(1).expand(8000, 8000)` is one stored element (a 3,725-byte file), and Adam's
    load_state_dict cast it to the parameter's dtype at full size (+488 MiB; n=100000 asks 40 GB)."""
    import torch

    from dropj.models import checkpoints

    def expand(state):
        state[0]["exp_avg"] = torch.zeros(1, dtype=torch.float64).expand(8000, 8000)

    path = tmp_path / "checkpoint.pt"
    model = _adam_checkpoint(path, expand)
    assert path.stat().st_size < 10_000
    optimizer = torch.optim.Adam(model.parameters())
    for load in (lambda: checkpoints.load_checkpoint(model, path, optimizer),
                 lambda: checkpoints.read_checkpoint(path)):
        with pytest.raises(checkpoints.CheckpointError) as err:
            load()
        message = str(err.value)
        assert message.startswith(f"{path}: tensor optimizer_state['state'][0]['exp_avg'] ") and "\n" not in message
        assert "stride 0" in message and "(8000, 8000)" in message
    assert not optimizer.state


@pytest.mark.parametrize("forged, why", [
    ("expanded", "stride 0"),
    ("overlapping", "overlap"),
    ("meta", "not on the CPU"),
])
def test_a_tensor_that_is_not_a_plain_view_of_its_storage_is_refused(tmp_path, forged, why):
    """torch.save keeps a tensor's size and strides beside its storage; a real tensor (or a view of one) never
    reads an element twice, so a view that does holds more elements than its file paid for."""
    import torch

    from dropj.models import checkpoints

    tensor = {"expanded": lambda: torch.zeros(3).expand(4, 3),  # stride 0 on a dimension of 4
              "overlapping": lambda: torch.zeros(100).as_strided((4, 4), (2, 1)),  # rows overlap by two
              "meta": lambda: torch.zeros(10 ** 6, 10 ** 6, device="meta")}[forged]()
    path = tmp_path / "model.pt"
    torch.save({"ok": torch.zeros(2), "layer": {"w": tensor}}, path)
    with pytest.raises(checkpoints.CheckpointError, match=why) as err:
        checkpoints.read_state_dict(path)
    assert str(err.value).startswith(f"{path}: tensor layer['w'] ") and "\n" not in str(err.value)


def test_real_views_tied_weights_and_adam_state_still_load(tmp_path):
    """What torch.save makes of real tensors passes: views (transposed, strided slices, a size-1 dimension of any
    stride, empty and 0-d tensors), tied weights sharing one storage, and a trained model's Adam state."""
    import torch

    from dropj.models import checkpoints

    base = torch.arange(24.0).reshape(4, 6)
    real = {"t": base.t(), "slice": base[1:, ::2], "tied": base, "row": torch.arange(3.0).expand(1, 3),
            "empty": torch.zeros(0, 5).expand(0, 5), "scalar": torch.tensor(2.0), "int": torch.arange(5).flip(0)}
    path = tmp_path / "views.pt"
    torch.save(real, path)
    state = checkpoints.read_state_dict(path)
    assert all(torch.equal(state[k], v) for k, v in real.items())
    assert state["t"].untyped_storage().data_ptr() == state["tied"].untyped_storage().data_ptr()

    path = tmp_path / "checkpoint.pt"
    model = _adam_checkpoint(path)
    optimizer = torch.optim.Adam(model.parameters())
    checkpoints.load_checkpoint(model, path, optimizer)
    model(torch.zeros(1, 3)).sum().backward()
    optimizer.step()


@pytest.mark.parametrize("key, shape, expected", [
    ("exp_avg", (5,), "expected shape (1, 3) (the parameter's), got (5,)"),
    ("exp_avg_sq", (3, 1), "expected shape (1, 3) (the parameter's), got (3, 1)"),
    ("step", (2,), "expected one element (the step count), got shape (2,)"),
], ids=["exp_avg", "exp_avg_sq-transposed", "step"])
def test_an_optimizer_state_that_does_not_fit_its_parameter_is_refused(tmp_path, key, shape, expected):
    """A wrong-shape Adam state loaded without a word and failed at the first step with a plain RuntimeError."""
    import torch

    from dropj.models import checkpoints

    def forge(state):
        state[0][key] = torch.zeros(shape)

    path = tmp_path / "checkpoint.pt"
    model = _adam_checkpoint(path, forge)
    with pytest.raises(checkpoints.CheckpointError) as err:
        checkpoints.load_checkpoint(model, path, torch.optim.Adam(model.parameters()))
    assert str(err.value) == f"{path}: tensor optimizer_state['state'][0][{key!r}]: {expected}"


@pytest.mark.parametrize("forge", ["missing", "a-list", "extra"])
def test_an_optimizer_state_without_the_optimizers_own_tensors_is_refused(tmp_path, forge):
    """Its review: an Adam state without exp_avg (a KeyError at the first step) or with a list for it (an
    AttributeError there) loaded without a word."""
    import torch

    from dropj.models import checkpoints

    def change(state):
        if forge == "missing":
            del state[0]["exp_avg"]
        elif forge == "a-list":
            state[0]["exp_avg"] = [1.0, 2.0, 3.0]
        else:
            state[0]["other"] = torch.zeros(1, 3)

    path = tmp_path / "checkpoint.pt"
    model = _adam_checkpoint(path, change)
    with pytest.raises(checkpoints.CheckpointError) as err:
        checkpoints.load_checkpoint(model, path, torch.optim.Adam(model.parameters()))
    assert str(err.value).startswith(f"{path}: optimizer_state['state'][0]: expected the tensors ['exp_avg', "
                                     "'exp_avg_sq', 'step'] that Adam keeps for a parameter, got"), err.value


def test_optimizer_state_tensors_sharing_one_storage_are_refused(tmp_path):
    """Each state tensor, of the right shape, is cast to its parameter's dtype on load: 1,000 names for one
    float64 storage would be 1,000 copies from one stored tensor. torch.save gives each its own storage."""
    import torch

    from dropj.models import checkpoints

    def share(state):
        shared = torch.zeros(1, 3, dtype=torch.float64)
        state[0].update({f"copy{i}": shared for i in range(1000)})

    path = tmp_path / "checkpoint.pt"
    model = _adam_checkpoint(path, share)
    with pytest.raises(checkpoints.CheckpointError, match="shares its storage with optimizer_state") as err:
        checkpoints.load_checkpoint(model, path, torch.optim.Adam(model.parameters()))
    assert str(err.value).startswith(f"{path}: tensor optimizer_state['state'][0]['copy") and "\n" not in str(err.value)
