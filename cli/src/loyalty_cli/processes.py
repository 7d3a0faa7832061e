"""Child processes by handle: a service (``python -m points_service serve``) or any other command,
spawned with its environment and its output in a log file; waited on until ``GET /readyz`` answers
200; stopped by its handle (SIGTERM, then SIGKILL after a timeout); its log tailed for messages.

One implementation for the integration tests' harness (``tests/integration/harness.py``) and the
benchmark (``bench/``). ``loyalty dev`` supervises its services itself (it streams their output).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

HOST = "127.0.0.1"
READY_PATH = "/readyz"
POLL_S = 0.2
EXIT_POLL_S = 0.1
KILL_WAIT_S = 10.0
TAIL_LINES = 30


class ProcessError(RuntimeError):
    """A child exited before it was ready, was not ready in time, or did not exit in time.

    ``headline`` is the message without the log's tail (for callers that show their own)."""

    def __init__(self, headline: str, log: str) -> None:
        super().__init__(f"{headline}:\n{log}")
        self.headline = headline


def serve_command(package: str, port: int, host: str = HOST) -> list[str]:
    """``python -m <package> serve`` on ``host:port``, with this interpreter."""
    return [sys.executable, "-m", package, "serve", "--host", host, "--port", str(port)]


def tail(path: Path, *, lines: int | None = TAIL_LINES, chars: int | None = None) -> str:
    """The end of a log file: its last ``chars`` characters if given, else its last ``lines`` lines
    (all of it when both are None); ``(no log)`` when it cannot be read."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    if chars is not None:
        return text[-chars:]
    return text if lines is None else "\n".join(text.splitlines()[-lines:])


@dataclass
class Spawned:
    """One child process we started: its handle, its log file, a name for messages and, for a
    server, its base URL."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    name: str
    url: str = ""

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def running(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int | None = TAIL_LINES, chars: int | None = None) -> str:
        return tail(self.log_path, lines=lines, chars=chars)

    async def wait_ready(
        self,
        within: float,
        *,
        path: str = READY_PATH,
        request_timeout: float = 2.0,
        interval: float = POLL_S,
    ) -> float:
        """Poll ``GET <url><path>`` until it answers 200; the seconds that took. Raises
        :class:`ProcessError` if the process exits first or is not ready ``within`` seconds."""
        started = time.perf_counter()
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(base_url=self.url, timeout=request_timeout) as client:
            while time.monotonic() < deadline:
                if not self.running():
                    why = f"{self.name} exited ({self.returncode}) before it was ready"
                    raise ProcessError(why, self.tail())
                try:
                    if (await client.get(path)).status_code == 200:
                        return time.perf_counter() - started
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(interval)
        raise ProcessError(f"{self.name} not ready after {within:g} s", self.tail())

    async def wait_exit(self, within: float) -> int:
        """Until the process has exited; its exit code (``-N``: killed by signal N). Raises
        :class:`ProcessError` if it has not ``within`` seconds."""
        deadline = time.monotonic() + within
        while (code := self.proc.poll()) is None:
            if time.monotonic() > deadline:
                raise ProcessError(f"{self.name} did not exit in {within:g} s", self.tail())
            await asyncio.sleep(EXIT_POLL_S)
        return code

    def kill(self) -> None:
        """SIGKILL (if it still runs), and reap it."""
        if self.running():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(KILL_WAIT_S)

    def terminate(self, timeout: float) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited after ``timeout`` seconds; its exit code.
        Blocks: from a running loop use :meth:`stop`."""
        if not self.running():
            return self.proc.returncode
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=KILL_WAIT_S)

    async def stop(self, within: float, *, then_kill: bool = True) -> int | None:
        """SIGTERM and wait for the exit; its exit code. If it has not exited ``within`` seconds: SIGKILL
        (``then_kill``), or raise :class:`ProcessError` and leave it running (``then_kill=False``:
        a process that must stop on SIGTERM, as the tests check)."""
        if then_kill:
            return await asyncio.to_thread(self.terminate, within)
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
        return await self.wait_exit(within)


def spawn(
    command: Sequence[str],
    *,
    log_path: Path,
    name: str,
    env: Mapping[str, str] | None = None,
    url: str = "",
    new_session: bool = False,
) -> Spawned:
    """Start ``command`` with ``env`` (None: ours), stdin from /dev/null, stdout and stderr into
    ``log_path`` (truncated). ``new_session``: in a session of its own, so a Ctrl-C at the terminal
    reaches only us and we stop it by its handle."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            list(command),
            env=None if env is None else dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=new_session,
        )
    return Spawned(proc, log_path, name, url)


def spawn_service(
    package: str,
    port: int,
    *,
    log_path: Path,
    env: Mapping[str, str],
    name: str | None = None,
    host: str = HOST,
    new_session: bool = False,
) -> Spawned:
    """``python -m <package> serve`` on ``host:port`` (see :func:`spawn`); not waited on: call
    :meth:`Spawned.wait_ready` (several services can start at once)."""
    return spawn(
        serve_command(package, port, host),
        log_path=log_path,
        name=name or package.replace("_", " "),
        env=env,
        url=f"http://{host}:{port}",
        new_session=new_session,
    )
