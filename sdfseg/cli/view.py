"""Look at a finished run in the browser: the room and its objects, coloured by object or class, a click
selects an object (id, class, size, faces, F-score on synthetic scenes), hide / isolate / download it,
the training cameras, and the feature head's part / object / group query for runs that have one.

Examples:
  python tools/view.py runs/demo                    # then open the printed URL (http://127.0.0.1:8080)
  python tools/view.py runs/demo --port 8081 --focus 3
  python tools/view.py runs/demo --host 0.0.0.0     # reachable from other machines (e.g. over an ssh tunnel)

Needs the viewer extra (pip install -e .[viewer]) and the run's meshes (written at the end of training,
or by tools/extract_mesh.py RUN). Ctrl-C stops the server.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sdfseg.errors import SdfsegError, run_cli


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path, help="run directory written by tools/train.py")
    ap.add_argument("--port", type=int, default=8080, help="port to serve on (default 8080)")
    ap.add_argument("--host", default="127.0.0.1", help="address to serve on (default localhost only)")
    ap.add_argument("--focus", default=None, help="start looking at this object (its id or name, e.g. 3 or chair_003)")
    ap.add_argument("--device", default=None, help="device of the feature query (default: the run's)")
    args = ap.parse_args(argv)
    if not 1 <= args.port <= 65535:
        raise SdfsegError(f"--port: expected 1..65535, got {args.port}")
    from sdfseg.viewer.app import import_viser, serve
    from sdfseg.viewer.data import load_view_data

    import_viser()
    focus = args.focus
    if focus is not None and focus.isdigit():
        data = load_view_data(args.run_dir, with_cameras=False)
        names = [k for k, o in data.objects.items() if o.row["id"] == int(focus)]
        if not names:
            raise SdfsegError(f"--focus: no object with id {focus} in {args.run_dir}")
        focus = names[0]
    serve(args.run_dir, args.host, args.port, focus, args.device)
    return 0


def console() -> None:
    """Console entry point."""
    run_cli(main)


if __name__ == "__main__":
    console()
