"""The streaming apps the control plane manages: the streaming registry's :class:`AppSpec` list.

The Dagster domain fixes its asset keys when definitions load, from the packaged model and the
default sink groups; :class:`~rdg_platform.assets.streaming_control.resource.StreamingLauncherResource`
runs the apps as the settings describe them (the same names unless ``RDG_STREAMING_SINK_GROUPS`` or
``RDG_SPEC`` change the set of apps).
"""

from __future__ import annotations

from pathlib import Path

from rdg_platform.model.spec import GraphSpec
from rdg_platform.settings import StreamingSettings
from rdg_platform.streaming.apps import AppSpec, app_specs


def load_apps(spec: GraphSpec, streaming: StreamingSettings | None = None,
              topics_file: Path | None = None) -> list[AppSpec]:
    """Every streaming app of the registry, in registry order (default streaming settings if none)."""
    return app_specs(spec, streaming or StreamingSettings(), topics_file)
