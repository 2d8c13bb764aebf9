"""The streaming apps the control plane manages, as :class:`AppInfo`, from the streaming app registry.

The registry (:func:`rdg_platform.streaming.apps.app_specs`) is the single list of apps that
``rdg apps`` runs; this module only adapts it to what launchers need (consumer group, input
topics, partitions = the replica cap, and the container command).
"""

from __future__ import annotations

import sys

from rdg_platform.launcher.base import AppInfo
from rdg_platform.model.spec import GraphSpec


def load_apps(spec: GraphSpec) -> list[AppInfo]:
    """Every streaming app of the registry, in registry order."""
    from rdg_platform.streaming.apps import app_specs

    out = []
    for a in app_specs(spec):
        command = tuple(a.command)
        if command and command[0] == sys.executable:  # a local interpreter path means nothing in an image
            command = ("python", *command[1:])
        out.append(AppInfo(name=a.name, consumer_group=a.consumer_group, input_topics=tuple(a.input_topics),
                           partitions=int(a.partitions), command=command, kind=a.kind))
    return out
