"""`spendguard up`: run api, worker and dashboard together; stop them together.

Ctrl-C (or SIGTERM) stops all three; if one exits on its own, the others are stopped too and
`up` exits with that child's status, so a crash is never hidden behind a half-running stack.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

STOP_GRACE_SECONDS = 10.0


def run_together(commands: dict[str, Sequence[str]]) -> int:
    children: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def request_stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = signal.signal(signal.SIGTERM, request_stop)
    try:
        for name, argv in commands.items():
            # Each child leads its own process group, so stopping it also stops anything it
            # started, and a terminal's Ctrl-C reaches only us: we stop the children in order.
            children[name] = subprocess.Popen(list(argv), start_new_session=True)
            print(f"spendguard up: started {name} (pid {children[name].pid})", file=sys.stderr)
        while not stopping:
            for name, child in children.items():
                code = child.poll()
                if code is not None:
                    print(
                        f"spendguard up: {name} exited with status {code}; stopping the rest",
                        file=sys.stderr,
                    )
                    _stop_all(children)
                    return code or 1
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    print("spendguard up: stopping api, worker and dashboard", file=sys.stderr)
    _stop_all(children)
    return 0


def _stop_all(children: dict[str, subprocess.Popen[bytes]]) -> None:
    for child in children.values():
        _signal_group(child, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for child in children.values():
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"spendguard up: pid {child.pid} ignored SIGTERM; killing it", file=sys.stderr)
        _signal_group(child, signal.SIGKILL)  # the child if still there, and its leftovers
        child.wait()


def _signal_group(child: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, sig)
