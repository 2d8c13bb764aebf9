"""``python -m rdg_platform.streaming run|supervise <app>``: the entry point of every app process."""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rdg_platform.streaming",
                                description="Run one streaming app (run) or its restart watchdog (supervise).")
    p.add_argument("command", choices=["run", "supervise", "list"])
    p.add_argument("app", nargs="?", help="app name (see `list`)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from rdg_platform.streaming.apps import app_specs

    if args.command == "list":
        for a in app_specs():
            print(f"{a.name}\t{a.kind}\t{a.consumer_group}\t{','.join(a.input_topics)}\t:{a.metrics_port}")
        return 0
    if not args.app:
        p.error("an app name is required")
    if args.command == "supervise":
        from rdg_platform.streaming.supervisor import watchdog

        return watchdog(args.app)
    from rdg_platform.streaming.apps import get_app

    app = get_app(args.app)
    if app.kind == "processor":
        from rdg_platform.streaming.processor import run_processor

        run_processor(app.name)
    else:
        from rdg_platform.streaming.sink import run_sink

        run_sink(app.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
