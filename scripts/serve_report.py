"""Serve the data-quality report (Great Expectations Data Docs) on localhost.

Usage: ``python scripts/serve_report.py [--port 8099]`` (``make report``). Serves
``<var>/reports`` read-only until Ctrl-C; the Data Docs are under ``data_docs/``.
"""

from __future__ import annotations

import argparse
import functools
import sys
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file from any cwd

from blink.config import load  # noqa: E402

HOST = "127.0.0.1"  # the report is for people on this machine; never listen on all interfaces


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8099, help="port on 127.0.0.1 (8099)")
    args = parser.parse_args(argv)

    reports = load().var / "reports"
    index = reports / "data_docs" / "index.html"
    if not index.exists():
        print(f"no report yet: {index} is missing; run the DAG first (make demo or blink run-dag)",
              file=sys.stderr)
        return 1
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(reports))
    try:
        server = ThreadingHTTPServer((HOST, args.port), handler)
    except OSError as exc:
        print(f"cannot listen on {HOST}:{args.port}: {exc.strerror}; try --port N", file=sys.stderr)
        return 1
    with server:
        print(f"Data Docs: http://{HOST}:{server.server_address[1]}/data_docs/index.html "
              "(Ctrl-C to stop)", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
