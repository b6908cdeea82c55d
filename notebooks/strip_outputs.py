"""Keep the committed notebooks clean: no execution counts, no outputs but the figures.

    python notebooks/strip_outputs.py                 # strip every notebooks/*.ipynb in place
    python notebooks/strip_outputs.py --check         # exit 1 naming any notebook not stripped
    python notebooks/strip_outputs.py --execute 01_quickstart.ipynb 03_length_generalization.ipynb
        # run them top to bottom first (a Jupyter kernel in notebooks/, full size unless
        # GAU_JAX_SMOKE=1), then strip: the figures of that run stay in the file

A figure is a display_data output holding an image/png (matplotlib's inline backend); printed
text, tables, progress bars and errors are dropped, since they change from run to run.
Needs nbformat and nbclient (the `test` extra).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent


def is_figure(output: dict) -> bool:
    return output.get("output_type") == "display_data" and "image/png" in output.get("data", {})


def strip(nb: nbformat.NotebookNode) -> bool:
    """Strip `nb` in place; True if anything changed."""
    changed = False
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs = [o for o in cell.outputs if is_figure(o)]
        for o in outputs:
            keep = {k: v for k, v in o["data"].items() if k in ("image/png", "text/plain")}
            if keep != o["data"] or o.get("metadata"):
                o["data"], o["metadata"] = keep, {}
                changed = True
        if outputs != cell.outputs or cell.execution_count is not None or "execution" in \
                cell.metadata:
            cell.outputs, cell.execution_count = outputs, None
            cell.metadata.pop("execution", None)
            changed = True
    return changed


def execute(path: Path) -> nbformat.NotebookNode:
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    t0 = time.time()
    NotebookClient(nb, timeout=None, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    print(f"{path.name}: ran in {time.time() - t0:.0f}s", flush=True)
    return nb


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebooks", nargs="*", help="names or paths (default: notebooks/*.ipynb)")
    ap.add_argument("--check", action="store_true", help="report, do not write")
    ap.add_argument("--execute", action="store_true", help="run each notebook before stripping")
    args = ap.parse_args(argv)
    paths = [HERE / p if not Path(p).exists() else Path(p) for p in args.notebooks] or \
        sorted(HERE.glob("*.ipynb"))
    dirty = []
    for path in paths:
        nb = execute(path) if args.execute else nbformat.read(path, as_version=4)
        if strip(nb) or args.execute:
            dirty.append(path.name)
            if not args.check:
                nbformat.write(nb, path)
    if args.check and dirty:
        print("not stripped (run python notebooks/strip_outputs.py):", ", ".join(dirty))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
