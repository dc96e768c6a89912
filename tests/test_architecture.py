"""The rooms of docs/architecture.md and what each may import, checked on the source and in fresh interpreters."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from factory import REPO
from dropj_datasets import schema

# room -> the folder holding it (relative to the repo) and the rooms it may import (itself always).
ROOMS = {
    "define": ("dropj_datasets", {"define"}),
    "app": ("dropj_datasets/app", {"define", "write", "read", "models"}),
    "write": ("converters", {"define"}),
    "read": ("loaders", {"define"}),
    "models": ("models", {"define"}),
}
# The documented exceptions (docs/architecture.md): the builders run the converters when TFDS builds,
# and readers check an untrusted built directory with the writer's own check before TFDS opens it.
EXCEPTIONS = {
    ("dropj_datasets/builder.py", "dropj.converters.release.kinds"),
    ("dropj_datasets/builder.py", "dropj.converters.store.durable"),
    ("loaders/training_data.py", "dropj.converters.store.dataset_dir"),
    ("loaders/tf_training_data.py", "dropj.converters.store.dataset_dir"),
    ("loaders/episode_source.py", "dropj.converters.store.dataset_dir"),
    ("loaders/episode_index.py", "dropj.converters.store.durable"),  # the index is written whole or not at all
    ("loaders/episode_index.py", "dropj.converters.store.dataset_dir"),  # shards opened and steps capped by its checks
    ("models/dream.py", "dropj.converters.store.legacy_pickle"),  # start-state files, through the one safe reader
}
NEVER_IN = {"models": ("tensorflow", "tensorflow_datasets", "rlds", "reverb")}
NEVER_IN_FILE = {"loaders/transformations.py": ("torch",),  # pure tf.data; the torch bridge is apart
                 "loaders/episode_source.py": ("tensorflow", "tensorflow_datasets", "rlds", "torch"),
                 "loaders/map_datasets.py": ("tensorflow", "tensorflow_datasets", "rlds"),
                 "loaders/episode_index.py": ("tensorflow", "tensorflow_datasets", "rlds", "torch"),
                 "loaders/tfrecord_wire.py": ("tensorflow", "tensorflow_datasets", "rlds", "torch"),
                 "loaders/batch_ring.py": ("tensorflow", "tensorflow_datasets", "rlds"),
                 "loaders/training_data.py": ("tensorflow", "tensorflow_datasets", "rlds"),
                 **{f"dropj_datasets/schema/{m}.py": ("tensorflow", "tensorflow_datasets", "torch")
                    for m in ("__init__", "keys", "errors", "fields", "envs", "kinds", "release", "written", "docs")},
                 "dropj_datasets/codec.py": ("tensorflow", "torch")}


def _room_of_module(name: str) -> str | None:
    if name == "dropj_datasets.app" or name.startswith("dropj_datasets.app."):
        return "app"
    if name == "dropj_datasets" or name.startswith("dropj_datasets."):
        return "define"
    for prefix, room in (("dropj.converters", "write"), ("dropj.loaders", "read"), ("dropj.models", "models")):
        if name == prefix or name.startswith(prefix + "."):
            return room
    if name == "factory" or name.startswith("factory."):
        return "tooling"
    return None


def _room_of_file(relative: str) -> str:
    return "app" if relative.startswith("dropj_datasets/app/") else next(
        room for room, (folder, _) in ROOMS.items() if relative.startswith(folder + "/"))


def _imports(path) -> list[str]:
    """Every module a file imports, at any depth (lazy imports inside functions too)."""
    tree = ast.parse(path.read_text(), str(path))
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the installed package name
                base = {"converters": "dropj.converters", "loaders": "dropj.loaders",
                        "models": "dropj.models"}.get(package.split(".")[0], package)
                base = ".".join(base.split(".")[: len(base.split(".")) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module
            names += [f"{module}.{alias.name}" for alias in node.names]
    return names


def _product_files():
    for folder in ("dropj_datasets", "converters", "loaders", "models"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if not path.name.endswith("_test.py"):
                yield path


def test_each_room_imports_only_what_it_may():
    wrong = []
    for path in _product_files():
        relative = str(path.relative_to(REPO))
        room = _room_of_file(relative)
        allowed = ROOMS[room][1] | {room}
        for name in _imports(path):
            target = _room_of_module(name)
            if target is None:
                never = NEVER_IN.get(room, ()) + NEVER_IN_FILE.get(relative, ())
                if any(name == m or name.startswith(m + ".") for m in never):
                    wrong.append(f"{relative} imports {name}")
                continue
            if target not in allowed and (relative, name) not in EXCEPTIONS and \
                    not any(name.startswith(e + ".") for r, e in EXCEPTIONS if r == relative):
                wrong.append(f"{relative} ({room}) imports {name} ({target})")
    assert not wrong, "\n".join(sorted(set(wrong)))


def _fresh(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip()


HEAVY = ("tensorflow", "tensorflow_datasets", "torch", "rlds", "reverb", "envlogger")


@pytest.mark.parametrize("module", ["dropj_datasets.schema", "dropj_datasets.envs", "dropj_datasets.codec",
                                    "dropj_datasets"])
def test_light_modules_load_no_framework(module):
    loaded = _fresh(f"import sys, {module}\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    assert loaded == "", f"importing {module} loaded {loaded}"


def test_models_load_no_tensorflow():
    loaded = _fresh("import sys, dropj.models\nprint(','.join(m for m in ('tensorflow', 'tensorflow_datasets') "
                    "if m in sys.modules))")
    assert loaded == ""


@pytest.mark.slow
@pytest.mark.parametrize("order", ["dropj_datasets first", "tensorflow_datasets first", "builder module first"])
def test_importing_dropj_datasets_registers_both_builders_in_either_order(order):
    first, second = {"dropj_datasets first": ("import dropj_datasets", "import tensorflow_datasets as tfds"),
                     "tensorflow_datasets first": ("import tensorflow_datasets as tfds", "import dropj_datasets"),
                     "builder module first": ("import dropj_datasets.builder",
                                              "import tensorflow_datasets as tfds")}[order]
    out = _fresh(f"{first}\n{second}\nimport tensorflow_datasets as tfds\n"
                 "print(sorted(b for b in tfds.list_builders() if b.startswith('dropj')))")
    assert out == "['dropj_carracing', 'dropj_obst_carracing']"


def test_every_kind_has_a_converter_and_every_spec_a_kind():
    from dropj.converters.release import kinds

    specs = [spec for configs in schema.DATASETS.values() for spec in configs.values()]
    specs += [spec for configs in schema.WRITTEN.values() for spec in configs.values()]
    assert {spec.kind for spec in specs} == set(schema.KINDS)
    for spec in specs:
        converter = kinds.converter(spec)
        assert isinstance(converter, kinds.Converter), spec.config
        assert spec.fields() and spec.needs(), spec.config


def test_every_env_has_one_identity_that_models_envs_and_the_recorder_read():
    import gymnasium

    import dropj_datasets.envs  # noqa: F401  (registers the ids)
    from dropj.converters.recording import capture as record
    from dropj.models import MDNRNN, ConvVAE

    for name, env in schema.ENVS.items():
        made = record.make_env(name, 5)
        assert made.unwrapped.env_spec is env, name
        assert made.observation_space.shape == env.frame_shape
        assert gymnasium.spec(env.gym_id).id == env.gym_id
        assert MDNRNN.for_env(name).config.n_mixtures == env.n_mixtures
        assert ConvVAE.for_env(env).config.n_z == env.n_z
        made.close()
