"""N processes of one command on this machine, coordinated by jax.distributed (development).

    python tools/launch_local.py -n 2 --devices 2 [--timeout 600] -- \
        python -m experiments.train --config configs/pretrain.py:gau_alpha_tiny --workdir DIR

starts N copies of the command, copy i with `--coordinator_address 127.0.0.1:PORT
--num_processes N --process_id I` appended (PORT: a free loopback port), JAX_PLATFORMS=cpu and
XLA_FLAGS giving it K simulated CPU devices, so the run sees N·K devices over N processes as a
multi-host job would. Output lines are prefixed with "[i] ". It waits for all of them; when one
fails (or the timeout passes, or this launcher gets SIGTERM / Ctrl-C) it kills the others, each
by its PID. The exit status is the worst one: the first non-zero status of a process that ended
by itself (a signal k counts as 128 + k; a timeout is 124), else 0.

`launch(...)` is the same as a function (tests import this file).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence

TIMEOUT = 124


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_env(devices: int, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of one process: `devices` CPU devices (any other XLA flags kept)."""
    env = dict(os.environ if base is None else base)
    flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "", env.get("XLA_FLAGS", ""))
    env["XLA_FLAGS"] = f"{flags.strip()} --xla_force_host_platform_device_count={devices}".strip()
    env["JAX_PLATFORMS"] = "cpu"
    return env


def _status(code: int) -> int:
    return 128 - code if code < 0 else code


def _pipe(stream, prefix: str, out) -> None:
    for line in iter(stream.readline, ""):
        out.write(prefix + line)
        out.flush()
    stream.close()


def launch(command: Sequence[str], num_processes: int, devices: int = 1, *,
           port: int | None = None, timeout: float | None = None,
           env: Mapping[str, str] | None = None, cwd: str | None = None, out=None) -> int:
    """Runs the N processes (module docstring) and returns the worst exit status."""
    port = port or free_port()
    out = out or sys.stdout
    procs: list[subprocess.Popen] = []
    threads = []
    worst = 0
    try:
        for i in range(num_processes):
            argv = [*command, "--coordinator_address", f"127.0.0.1:{port}",
                    "--num_processes", str(num_processes), "--process_id", str(i)]
            p = subprocess.Popen(argv, env=process_env(devices, env), cwd=cwd, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            procs.append(p)
            t = threading.Thread(target=_pipe, args=(p.stdout, f"[{i}] ", out), daemon=True)
            t.start()
            threads.append(t)
        deadline = None if timeout is None else time.monotonic() + timeout
        running = set(range(num_processes))
        while running and worst == 0:
            for i in sorted(running):
                code = procs[i].poll()
                if code is not None:
                    running.discard(i)
                    worst = worst or _status(code)
            if deadline is not None and time.monotonic() > deadline and running:
                out.write(f"launch_local: timeout after {timeout:.0f}s; stopping all\n")
                worst = TIMEOUT
            time.sleep(0.05)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for p in procs:
            p.wait()
        for t in threads:
            t.join(timeout=5)
    return worst


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--num_processes", type=int, default=2)
    parser.add_argument("--devices", type=int, default=1, help="CPU devices per process")
    parser.add_argument("--port", type=int, default=0, help="coordinator port (0: a free one)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds before all stop")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command or args.num_processes < 1 or args.devices < 1:
        parser.error("give -n >= 1, --devices >= 1 and a command after --")

    def stop(signum, frame):  # SIGTERM → the finally of launch() kills every child
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        return launch(command, args.num_processes, args.devices, port=args.port or None,
                      timeout=args.timeout)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
