"""Crash points for the tests that prove the delivery guarantees.

``LOYALTY_FAILPOINTS=consumer.after_db_commit`` makes the process SIGKILL itself at that point, the
way a power cut or an OOM kill would. Unset (always, in production), ``hit`` does nothing.
"""

from __future__ import annotations

import os
import signal
import sys


def hit(name: str) -> None:
    armed = os.environ.get("LOYALTY_FAILPOINTS", "")
    if armed and name in armed.split(","):
        sys.stderr.write(f"failpoint {name}: killing process {os.getpid()}\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
