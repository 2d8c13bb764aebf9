"""``python -m rdg_platform.streaming run|supervise|list [<app>]``: the entry point of every app process.

It builds the settings (:func:`rdg_platform.settings.load_settings`) once and hands them down; a bad
setting fails here, at start, with a message naming the variable.
"""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rdg_platform.streaming",
                                description="Run one streaming app (run) or its restart watchdog (supervise).")
    p.add_argument("command", choices=["run", "supervise", "list"])
    p.add_argument("app", nargs="?", help="app name (see `list`)")
    p.add_argument("--instance", help="ignored: marks a watchdog's process as its supervisor's (a state dir)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from rdg_platform.local_services.credentials import local_role_settings
    from rdg_platform.settings import SettingsError, load_settings
    from rdg_platform.streaming.apps import app_specs, get_app

    try:
        settings = load_settings()
        if settings.env == "local":  # locally, credentials not given come from the state dir
            settings = local_role_settings(settings, "app")
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    apps = app_specs(settings.load_spec(), settings.streaming, settings.topics_file)
    if args.command == "list":
        for a in apps:
            print(f"{a.name}\t{a.kind}\t{a.consumer_group}\t{','.join(a.input_topics)}\t:{a.metrics_port}")
        return 0
    if not args.app:
        p.error("an app name is required")
    app = get_app(apps, args.app)
    if args.command == "supervise":
        from rdg_platform.streaming.supervisor import watchdog

        return watchdog(settings, app.name)
    if app.kind == "processor":
        from rdg_platform.streaming.processor import run_processor

        run_processor(settings, app.name)
    else:
        from rdg_platform.streaming.sink import run_sink

        run_sink(settings, app.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
