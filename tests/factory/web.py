"""Web helpers for tests and benchmarks: free ports, `dropj annotate` as a process, headless Chromium."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time

import factory

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def wait_for(condition, timeout: float = 30.0, what=""):
    """Polls `condition()` until it returns something true (returned), or fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out" + (f": {what() if callable(what) else what}" if what else ""))


def new_chromium(*flags: str):
    """Debian's chromium in headless mode through its chromium-driver (Selenium)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 "--autoplay-policy=no-user-gesture-required", "--window-size=1100,900", *flags):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.implicitly_wait(0)
    return driver


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`dropj annotate` in a subprocess."""

    def __init__(self, queries_dir, out, method="dropj", user=5, host="127.0.0.1", queries="dropj_carracing/queries"):
        self.args = [sys.executable, "-m", "dropj_datasets.app", "annotate", "--queries", queries,
                     "--data_dir", str(queries_dir), "--method", method, "--user", str(user), "--out", str(out),
                     "--host", host]
        self.out, self.method, self.host = out, method, host
        self.start()

    def start(self):
        self.port = free_port()
        self.proc = subprocess.Popen(self.args + ["--port", str(self.port)], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, cwd=factory.REPO)
        self.url = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError(f"dropj annotate exited (rc {self.proc.wait()})")
            if line.startswith("open "):
                self.url = line.split()[1].replace("0.0.0.0", "127.0.0.1")
                break
        for _ in range(200):  # the port opens a moment after the line
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("the server never listened")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self, sig=signal.SIGKILL):
        self.proc.send_signal(sig)
        self.proc.wait(timeout=30)

    def responses(self) -> list[dict]:
        import tensorflow_datasets as tfds

        from dropj.converters.feedback import annotations

        directory = annotations.annotation_dir(self.out, self.method)
        builder = tfds.builder_from_directory(str(directory))
        return list(tfds.as_numpy(builder.as_dataset(split="train", shuffle_files=False)))


class App:
    """A `dropj` web command (`annotate`, `serve`, `record --web`) in a subprocess, read until it prints its
    address; its output is read on a thread, so `stop` can tell what it said after the signal."""

    def __init__(self, *args: str, port: int = 0, timeout: float = 300.0):
        import threading

        self.port = port or free_port()
        self.args = list(args)
        self.proc = subprocess.Popen([sys.executable, "-m", "dropj_datasets.app", *args, "--port", str(self.port)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=factory.REPO)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self._reader.start()
        opened = wait_for(lambda: next((line for line in self.lines if line.startswith("open ")), None)
                          or (self.proc.poll() is not None and "exited"), timeout,
                          lambda: "".join(self.lines))
        if opened == "exited":
            raise AssertionError(f"dropj {args[0]} exited (rc {self.proc.returncode}): {''.join(self.lines)}")
        self.url = opened.split()[1]
        self.token = self.url.split("?token=")[1] if "?token=" in self.url else None
        wait_for(self._listening, 30, "the server never listened")

    def _listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, sig=signal.SIGTERM) -> str:
        """Signals it, waits for it to end, and returns what it printed after the signal."""
        time.sleep(0.2)  # lines already under way
        said = len(self.lines)
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        self.proc.wait(timeout=120)
        self._reader.join(timeout=30)
        return "".join(self.lines[said:])

    @staticmethod
    def recorded(out, config: str) -> list[dict]:
        import tensorflow_datasets as tfds

        from dropj.converters.recording import capture as record

        builder = tfds.builder_from_directory(str(record.recording_dir(out, config)))
        return list(tfds.as_numpy(builder.as_dataset(split="train", shuffle_files=False)))


def received_until_closed(ws) -> list:
    """Every message a websocket-client connection receives until the server closes it."""
    import websocket

    messages = []
    try:
        while True:
            messages.append(ws.recv())
    except websocket.WebSocketConnectionClosedException:
        return messages


class RecordServer(App):
    """`dropj record --web` in a subprocess (`factory.web.App`); `stop` returns all it printed after its address."""

    def __init__(self, out, *extra: str, config: str = "carracing", port: int = 0):
        self.out, self.config = out, config
        super().__init__("record", "--web", "--out", str(out), "--user", "default", *extra, port=port)

    def stop(self) -> str:
        super().stop()
        opened = next(i for i, line in enumerate(self.lines) if line.startswith("open "))
        return "".join(self.lines[opened + 1:])

    def episodes(self) -> list[dict]:
        return App.recorded(self.out, self.config)
