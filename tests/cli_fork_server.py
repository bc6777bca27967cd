"""Runs ``singleshot`` command lines for the generated CLI test, each in its own forked process.

A fresh interpreter imports the CLI once (no torch, no thread pools yet) and then forks a child
per case, so a few hundred cases cost milliseconds each instead of an interpreter start: the
child is a real process with the real ``main()``, its own stdout/stderr files and exit status.

Protocol: one JSON object per line on stdin, ``{"args": [...], "cwd": str, "timeout": s}``;
one JSON line per case on stdout, ``{"code": int | null (timed out), "stdout": str,
"stderr": str, "seconds": float}``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time


def run_case(args: list[str], cwd: str, timeout: float) -> dict:
    from singleshot.app.cli import main

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.monotonic()
        pid = os.fork()
        if pid == 0:  # the child: the command line as a user runs it
            code = 99
            try:
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                os.setsid()  # its own group: a timed-out case is killed with its children
                os.chdir(cwd)
                sys.argv = ["singleshot", *args]
                main()
                code = 0
            except SystemExit as exc:
                c = exc.code
                code = c if isinstance(c, int) else (0 if c is None else 1)
            except BaseException:  # noqa: BLE001 - a traceback is what the test looks for
                import traceback

                traceback.print_exc()
                code = 98
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        code = None
        while time.monotonic() - t0 < timeout:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                code = os.waitstatus_to_exitcode(status)
                break
            time.sleep(0.01)
        else:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
        seconds = time.monotonic() - t0

        def text(f) -> str:
            f.seek(0)
            return f.read().decode("utf-8", "replace")

        return {"code": code, "stdout": text(out), "stderr": text(err), "seconds": seconds}


def serve() -> None:
    import singleshot.app.cli  # noqa: F401 - imported once, before any fork

    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for line in sys.stdin:
        case = json.loads(line)
        res = run_case(case["args"], case["cwd"], case["timeout"])
        sys.stdout.write(json.dumps(res) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    serve()
