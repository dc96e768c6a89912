"""Docs that run: every ```bash and ```python block of README.md and docs/*.md runs against the embedded sample,
so a stale line fails here (one test per block, named by the doc and the line of its fence).

Each block runs in a fresh temporary working directory: bash blocks with `bash -euo pipefail`, Python blocks with
the venv's python (the file run is named after the doc and keeps the doc's line numbers, so a traceback names the
doc's line), with the venv's bin first on PATH and TFDS's default data dir an empty folder. A block passes when it
exits 0 and its stderr holds neither "Traceback" nor "Exception ignored" (a traceback at interpreter exit). Blocks
of other languages (```text, ```toml, output examples) are not run.

Markers: HTML comments on the lines right before a block's fence; `;` separates several in one comment.

    <!-- doc-test: skip (the reason) -->  not run; the reason is required and is the test's skip reason
    <!-- doc-test: continue -->           runs after the block before it, in the same directory (one test for the
                                          chain, named by its lines); consecutive Python blocks share one interpreter
    <!-- doc-test: timeout N -->          each command on its own: within N seconds it must finish (exit 0) or be
                                          ready (print its URL; with `display`, print a line and keep running 3 s);
                                          then it is stopped with Ctrl-C and must stop cleanly (exit 0, or 130, and
                                          no traceback)
    <!-- doc-test: display -->            runs with DISPLAY set to a fresh Xvfb (a window waiting for its driver);
                                          skipped without Xvfb and xdotool (`make sysdeps` installs them)

Every block's test is marked `slow` (each runs the stack in subprocesses, on data built for the session):
`make test` runs them, `make test-fast` leaves them out; the runner's own tests below are fast.

The docs' placeholders, made real in the working directory when a block names them:

    M                        the release files of both embedded samples (`dropj_datasets/*/dummy_data`)
    D, demo_data             a data dir with every config of the sample built (once per session; a copy per block)
    vae.pt, mdnrnn.pt        checkpoints trained for 2 steps on the sample
    runs/vae, runs/mdnrnn,   those runs, and a reward run, where a block reads them (not where it writes them with
    runs/reward              `--out`)
    new_feedback             `dropj annotate`'s store: user 31's answers to the sample's queries (unless `--out`)
    recordings               `dropj record`'s store: a scripted episode of Car Racing, and one in its dream
                             (unless `--out`)
    default_init_obs.pkl     the sample's
    RELEASE/, release/       $DROPJ_REAL_DATA (the release's checkpoints); the block is skipped when it is unset
    .venv, dropj_datasets/,  the repository's
    docs/FILE
    $D, $M                   the absolute paths of D and M, for blocks written `D=${D:-...}`
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import pytest

import factory

DOCS = [factory.REPO / "README.md", *sorted((factory.REPO / "docs").glob("*.md"))]
RUN = {"bash": "sh", "python": "py"}  # the languages run, and their script suffix
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[ \t]*$")
MARKER = re.compile(r"^[ \t]*<!--\s*doc-test:\s*(?P<what>.*?)\s*-->[ \t]*$")
BLOCK_SECONDS = 600  # a whole block at most (2 cores shared by the whole suite)
STOP_SECONDS = 20  # after Ctrl-C
WINDOW_SECONDS = 3.0  # a window (`display`) runs this long after its first line before it is stopped
FORBIDDEN = ("Traceback", "Exception ignored")
VENV_BIN = Path(sys.executable).parent


@dataclasses.dataclass
class Block:
    doc: str  # relative to the repository: 'docs/loaders.md'
    line: int  # the opening fence's line (1-based)
    lang: str
    lines: list[str]  # the body, the fence's indentation removed
    markers: dict = dataclasses.field(default_factory=dict)

    @property
    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _markers(comments: list[str], where: str, errors: list[str]) -> dict:
    found: dict = {}
    for what in comments:
        skip = re.fullmatch(r"skip\s*(?:\((?P<reason>.*)\))?", what)
        if skip:
            if not (skip["reason"] or "").strip():
                errors.append(f"{where}: `skip` needs a reason: <!-- doc-test: skip (why) -->")
            found["skip"] = (skip["reason"] or "").strip()
            continue
        for word in filter(None, (w.strip() for w in what.split(";"))):
            timeout = re.fullmatch(r"timeout\s+(\d+(?:\.\d+)?)", word)
            if timeout:
                found["timeout"] = float(timeout[1])
            elif word in ("continue", "display"):
                found[word] = True
            else:
                errors.append(f"{where}: unknown marker {word!r} (skip (why), continue, timeout N, display)")
    return found


def parse(path: Path, errors: list[str]) -> list[Block]:
    """The fenced blocks of a Markdown file, with the markers right before each fence; marker mistakes go to
    `errors`."""
    doc = path.relative_to(factory.REPO).as_posix()
    lines = path.read_text().splitlines()
    blocks, comments, i = [], [], 0
    while i < len(lines):
        marker, fence = MARKER.match(lines[i]), FENCE.match(lines[i])
        if marker:
            comments.append(marker["what"])
        elif fence:  # every fence opens a block, so that a body line is never read as markup
            indent, body, start = fence["indent"], [], i
            i += 1
            while i < len(lines) and lines[i].strip() != "```":
                body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i].lstrip())
                i += 1
            where = f"{doc}:{start + 1}"
            markers = _markers(comments, where, errors)
            if markers and fence["lang"] not in RUN:
                errors.append(f"{where}: a doc-test marker before a ```{fence['lang']} block, which is not run")
            blocks.append(Block(doc, start + 1, fence["lang"], body, markers))
            comments = []
        elif comments:
            errors.append(f"{doc}:{i + 1}: a doc-test marker not right before a code fence")
            comments = []
        i += 1
    return blocks


def chains(errors: list[str]) -> list[list[Block]]:
    """The runnable blocks of every doc, a block marked `continue` joined to the one before it."""
    found: list[list[Block]] = []
    for path in DOCS:
        previous: Optional[list[Block]] = None
        for block in parse(path, errors):
            if block.lang not in RUN:
                continue
            where = f"{block.doc}:{block.line}"
            if block.markers.get("continue"):
                if previous is None:
                    errors.append(f"{where}: `continue`, but no runnable block before it in {block.doc}")
                elif "timeout" in block.markers or "timeout" in previous[-1].markers:
                    errors.append(f"{where}: `continue` and `timeout` do not mix (a server runs on its own)")
                else:
                    previous.append(block)
                    continue
            previous = [block]
            found.append(previous)
    return found


ERRORS: list[str] = []
CHAINS = chains(ERRORS)


def _param(chain: list[Block]):
    return pytest.param(chain, id=f"{chain[0].doc}:" + "+".join(str(b.line) for b in chain))


# --- what the docs name: made once per session, shared by the xdist workers -----------------------------


def _assets(root: Path) -> Path:
    """Builds the shared placeholders into root/doc-assets, once (a lock keeps the other workers waiting)."""
    assets = root / "doc-assets"
    with open(root / "doc-assets.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (assets / "done").exists():
            shutil.rmtree(assets, ignore_errors=True)
            _make_assets(assets)
            (assets / "done").touch()
    return assets


def _make_assets(assets: Path) -> None:
    import itertools

    import numpy as np

    from dropj.converters.feedback import annotations
    from dropj.converters.feedback.study import Study
    from dropj.converters.recording import capture as record
    from dropj_datasets import schema
    from dropj_datasets.app import catalog, train

    manual = assets / "M"  # both samples under one folder, file by file (the finder does not enter linked folders)
    for dataset in schema.DATASETS:
        sample = factory.dummy_data(dataset)
        for path in sorted(p for p in sample.rglob("*") if p.is_file()):
            link = manual / dataset / path.relative_to(sample)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(path)
    data = assets / "D"
    for dataset in schema.DATASETS:
        catalog.build(dataset, str(manual), str(data), progress=False, log=lambda line: None)
    for model, extra in (("vae", {}), ("mdnrnn", {"sequence_length": 8}), ("reward", {})):
        train.train_from_dataset(model, str(data), out_dir=str(assets / "runs" / model), steps=2, batch_size=2,
                                 num_workers=0, progress=False, log=lambda line: None, validate_every=2, **extra)
    store = annotations.Annotations("dropj_carracing/queries", "dropj", assets / "new_feedback", data_dir=str(data))
    study = Study(store.spec)
    while (video := store.next_query(31)) is not None:  # the study's own questions, answers varied by query
        answers: list[tuple[str, str]] = []
        while (question := study.next_question(answers)) is not None:
            pick = (int(video.split(".")[0]) + len(answers)) % len(question.options)
            answers.append((question.text, question.options[pick]))
        entry = study.entry(video, answers, seconds=[1.0] * len(answers), total_time=2.0, repeat_count=0)
        store.commit(31, entry, session="doc-test", start_time=0.0, user_agent="tests/test_docs.py")
    store.close()
    init = factory.dummy_data("dropj_carracing") / "extracted" / "default_init_obs.pkl"
    for env_name, dream in (("carracing", {}), ("carracing_dream", {"init_states": str(init), "mdnrnn": str(
            assets / "runs" / "mdnrnn" / "checkpoint.pt")})):  # one short scripted episode each
        recorder = record.open_recorder(env_name, assets / "recordings", "p07", seeds=itertools.count(0),
                                        gym_env=record.make_env(env_name, 60, **dream), log=lambda line: None)
        timestep = recorder.logger.reset()
        while not timestep.last():
            timestep = recorder.logger.step(np.array([0.0, 1.0, 0.0]))
        recorder.close()


@pytest.fixture(scope="session")
def shared(tmp_path_factory) -> Path:
    """A folder every xdist worker of this run shares (for the assets and the servers' lock)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def assets(shared: Path) -> Path:
    return _assets(shared)


# --- one block's working directory --------------------------------------------------------------------


def _named(text: str, name: str) -> bool:
    return re.search(rf"(?<![\w./$}}-]){re.escape(name)}(?![\w.-])", text) is not None or (
        name in ("D", "M") and re.search(rf"\${{?{name}\b", text) is not None)


def _read(text: str, name: str) -> bool:
    """The block names `name` as something it reads: named, and never the `--out` it writes."""
    written = re.search(rf"--out[ =]+{re.escape(name)}(?![\w.-])", text) is not None
    return _named(text, name) and not written


def prepare(text: str, work: Path, assets: Path, env: dict) -> None:
    """Makes the placeholders `text` names real in `work` (see the module's docstring)."""
    def link(name: str, target: Path) -> None:
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).symlink_to(target)

    if _named(text, "D") or _named(text, "demo_data"):
        shutil.copytree(assets / "D", work / "D", symlinks=True)
        link("demo_data", work / "D")
        env["D"] = str(work / "D")
    if _named(text, "M"):
        link("M", assets / "M")
        env["M"] = str(work / "M")
    for model in ("vae", "mdnrnn"):
        if _named(text, f"{model}.pt"):
            link(f"{model}.pt", assets / "runs" / model / "checkpoint.pt")
    for run in ("runs/vae", "runs/mdnrnn", "runs/reward"):
        if _read(text, run):
            link(run, assets / run)
    for store in ("new_feedback", "recordings"):
        if _read(text, store):
            shutil.copytree(assets / store, work / store, symlinks=True)
    if _named(text, "default_init_obs.pkl"):
        link("default_init_obs.pkl", factory.dummy_data("dropj_carracing") / "extracted" / "default_init_obs.pkl")
    if re.search(r"(?<![\w./-])(RELEASE|release)/", text):
        real = factory.real_data()
        if real is None:
            pytest.skip(f"names the release's files (RELEASE/): needs ${factory.REAL_DATA_VARIABLE}")
        link("RELEASE", real)
        link("release", real)
    if re.search(r"(?<![\w/])\.venv\b", text):
        link(".venv", VENV_BIN.parent)
    if re.search(r"(?<![\w./-])dropj_datasets/", text):
        link("dropj_datasets", factory.REPO / "dropj_datasets")
    for name in sorted(set(re.findall(r"(?<![\w./-])docs/([\w.-]+)", text))):
        if (factory.REPO / "docs" / name).is_file():  # copied: a relative path in it is read from here
            (work / "docs").mkdir(exist_ok=True)
            shutil.copy(factory.REPO / "docs" / name, work / "docs" / name)


def environment(work: Path) -> dict:
    (work / "tfds-default").mkdir(exist_ok=True)  # nothing read from, or written to, ~/tensorflow_datasets
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "TFDS_DATA_DIR": str(work / "tfds-default")}
    for name in ("SDL_VIDEODRIVER", "SDL_AUDIODRIVER", "WAYLAND_DISPLAY"):  # set by another test in this worker
        env.pop(name, None)  # (tests/define/envs): a doc's window is a real X11 one, as a reader's would be
    return env


# --- running ------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Ran:
    returncode: Optional[int]
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool


def _stop(proc: subprocess.Popen, sig: int, wait: float) -> bool:
    """Sends `sig` to the process group; True when the group leader exited within `wait` seconds."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    try:
        proc.wait(wait)
        return True
    except subprocess.TimeoutExpired:
        return False


def start(command: list[str], work: Path, env: dict, logs: Path) -> tuple[subprocess.Popen, Path, Path]:
    out, err = logs.with_suffix(".out"), logs.with_suffix(".err")
    with open(out, "w") as stdout, open(err, "w") as stderr:  # files, not pipes: a background job may hold them
        proc = subprocess.Popen(command, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                                start_new_session=True)
    return proc, out, err


def run_script(block_lines: list[tuple[int, str]], lang: str, doc: str, work: Path, env: dict) -> Ran:
    """Runs body lines (doc line number, text) as one script whose line numbers are the doc's."""
    last = block_lines[-1][0]
    script = [""] * last
    for number, text in block_lines:
        script[number - 1] = text
    if lang == "bash":  # line 1 is never a body line (the fence is above the first)
        script[0] = f"trap 'echo \"doc-test: {doc} line $LINENO failed (exit $?)\" >&2' ERR"
    path = work.parent / "scripts" / f"{doc}.{RUN[lang]}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(script) + "\n")
    command = ["bash", "-euo", "pipefail", str(path)] if lang == "bash" else [sys.executable, str(path)]
    began = time.monotonic()
    proc, out, err = start(command, work, env, path)
    timed_out = False
    try:
        proc.wait(BLOCK_SECONDS)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        _stop(proc, signal.SIGTERM, 5) or _stop(proc, signal.SIGKILL, 5)  # and any background job it left
    return Ran(proc.returncode, out.read_text(), err.read_text(), time.monotonic() - began, timed_out)


def commands(block: Block) -> list[str]:
    """The block's commands, one per logical line (continuation lines joined), comment lines left out."""
    joined = re.sub(r"\\\n", " ", block.text)
    return [line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def run_servers(block: Block, work: Path, env: dict, lock_dir: Path) -> list[str]:
    """A `timeout N` block: each command must, within N seconds, finish (exit 0) or be ready: have printed its URL
    (a web app), or with `display` its first line and then kept running for WINDOW_SECONDS (a window waiting for
    its driver). One that is ready is stopped with Ctrl-C and must stop cleanly. Returns what went wrong."""
    seconds, display, problems = block.markers["timeout"], block.markers.get("display"), []
    with open(lock_dir / "doc-servers.lock", "w") as lock:  # the docs' servers all take port 8000
        fcntl.flock(lock, fcntl.LOCK_EX)
        for n, command in enumerate(commands(block)):
            proc, out, err = start(["bash", "-euo", "pipefail", "-c", command], work, env,
                                   work.parent / f"server-{n}")
            deadline, ready, url, spoke = time.monotonic() + seconds, False, False, None
            while proc.poll() is None and time.monotonic() < deadline and not ready:
                time.sleep(0.25)
                said = out.read_text() + err.read_text()
                url = "http://" in said
                spoke = spoke or (time.monotonic() if said.strip() else None)
                ready = url or bool(display and spoke and time.monotonic() - spoke >= WINDOW_SECONDS)
            if url:
                time.sleep(1.0)  # a server that fails right after saying its address
            running = proc.poll() is None
            stopped = running and _stop(proc, signal.SIGINT, STOP_SECONDS)
            _stop(proc, signal.SIGKILL, 5)
            wrong = [f"exited {proc.returncode}"] if not running and proc.returncode != 0 else []
            if running and not ready:
                wrong.append(f"not ready in {seconds:g} s (no URL{'' if not display else ', no line'})")
            elif running and not stopped:
                wrong.append(f"did not stop within {STOP_SECONDS} s of Ctrl-C")
            elif running and proc.returncode not in (0, 130):  # 130: "interrupted", as a shell says it
                wrong.append(f"exited {proc.returncode} on Ctrl-C")
            wrong += [f"{word!r} in its stderr" for word in FORBIDDEN if word in err.read_text()]
            if wrong:
                said = out.read_text() + err.read_text()
                problems.append(f"`{command}`: {', '.join(wrong)}\n--- output:\n{said[-3000:]}")
    return problems


def run_chain(chain: list[Block], work: Path, env: dict, lock_dir: Path) -> list[str]:
    """Runs a chain's blocks in order; consecutive blocks of one language are one script. Returns the failures."""
    problems: list[str] = []
    groups: list[list[Block]] = []
    for block in chain:
        if groups and groups[-1][-1].lang == block.lang and "timeout" not in block.markers:
            groups[-1].append(block)
        else:
            groups.append([block])
    for group in groups:
        first = group[0]
        where = f"{first.doc}:" + "+".join(str(b.line) for b in group)
        if "timeout" in first.markers:
            problems += [f"{where}: {p}" for p in run_servers(first, work, env, lock_dir)]
            continue
        body = [(b.line + 1 + k, text) for b in group for k, text in enumerate(b.lines)]
        ran = run_script(body, first.lang, first.doc, work, env)
        wrong = [f"still running after {BLOCK_SECONDS} s"] if ran.timed_out else []
        wrong += [f"exit status {ran.returncode} after {ran.seconds:.0f} s"] if ran.returncode != 0 else []
        wrong += [f"{word!r} in its stderr" for word in FORBIDDEN if word in ran.stderr]
        if wrong:
            problems.append(f"{where}: {', '.join(wrong)}\n--- stderr:\n{ran.stderr[-4000:]}\n--- stdout:\n"
                            f"{ran.stdout[-2000:]}")
            break  # the blocks after it would fail for its sake
    return problems


# --- the tests ----------------------------------------------------------------------------------------


def test_every_marker_is_well_formed():
    assert not ERRORS, "\n".join(ERRORS)


def test_the_docs_have_blocks_to_run():
    """The parser sees the docs' blocks (a fence it missed would never be tested)."""
    runnable = [b for c in CHAINS for b in c]
    fences = sum(len(re.findall(r"^[ \t]*```(?:bash|python)[ \t]*$", p.read_text(), re.M)) for p in DOCS)
    assert len(runnable) == fences >= 40
    skipped = [c[0] for c in CHAINS if "skip" in c[0].markers]
    assert len(skipped) <= len(CHAINS) // 5, f"{len(skipped)} of {len(CHAINS)} blocks skipped"


def test_a_failing_block_names_its_doc_and_line(tmp_path):
    """The runner's own checks, on blocks that must fail: a failing line, a traceback at exit."""
    work = tmp_path / "work"
    work.mkdir()
    env = environment(work)
    failing = Block("docs/x.md", 3, "bash", ["echo fine", "false", "echo never"])
    [problem] = run_chain([failing], work, env, tmp_path)
    assert problem.startswith("docs/x.md:3: exit status 1") and "docs/x.md line 5 failed" in problem
    at_exit = Block("docs/x.md", 7, "python", ["import atexit", "atexit.register(lambda: 1 / 0)"])
    [problem] = run_chain([at_exit], work, env, tmp_path)
    assert problem.startswith("docs/x.md:7: 'Traceback' in its stderr")
    assert "x.md.py\", line 9, in <lambda>" in problem  # the doc's own line number
    server = Block("docs/x.md", 9, "bash", ["sleep 30   # no URL"], {"timeout": 1.0})
    [problem] = run_chain([server], work, env, tmp_path)
    assert "not ready in 1 s (no URL)" in problem


def test_install_md_names_every_command():
    """docs/install.md's list of subcommands is `dropj --help`'s."""
    from dropj_datasets.app import cli

    text = " ".join((factory.REPO / "docs" / "install.md").read_text().split())
    listed = re.search(r"has the subcommands (.*?) \(`dropj --help`", text)
    assert listed, "docs/install.md no longer lists the subcommands"
    [subcommands] = [a.choices for a in cli.parser()._subparsers._group_actions]  # argparse keeps them there
    assert re.findall(r"`([\w-]+)`", listed[1]) == list(subcommands)


@pytest.mark.slow
@pytest.mark.parametrize("chain", [_param(c) for c in CHAINS])
def test_doc_block_runs(chain: list[Block], assets: Path, shared: Path, tmp_path):
    first = chain[0]
    if "skip" in first.markers:
        pytest.skip(first.markers["skip"])
    work = tmp_path / "work"
    work.mkdir()
    env = environment(work)
    text = "".join(b.text for b in chain)
    prepare(text, work, assets, env)
    xserver = None
    if any(b.markers.get("display") for b in chain):
        from factory import window

        if window.MISSING:
            pytest.skip(f"needs {' and '.join(window.MISSING)} (`make sysdeps` installs them)")
        xserver = window.XServer()
        env["DISPLAY"] = xserver.display
    try:
        problems = run_chain(chain, work, env, shared)
    finally:
        if xserver is not None:
            xserver.close()
    assert not problems, "\n\n".join(problems)
