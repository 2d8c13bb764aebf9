"""Render the Kubernetes manifests of rdg-platform for one environment (no Helm binary needed).

    python deploy/render.py --env prod > rdg.yaml        # then: kubectl apply -f rdg.yaml

Dagster (webserver, daemon, K8sRunLauncher instance config, RBAC, env ConfigMap) comes from the
Jinja2 templates in ``deploy/templates`` with ``deploy/values/<env>.yaml``; the streaming apps'
Deployments come from :func:`rdg_platform.launcher.kubernetes.build_deployment`, the very code the
``kubernetes`` launcher applies at run time, so what is rendered here is what Dagster deploys.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import jinja2
import yaml

HERE = Path(__file__).resolve().parent
ENVIRONMENTS = ("local", "prod")


def load_values(env: str) -> dict[str, Any]:
    if env not in ENVIRONMENTS:
        raise ValueError(f"unknown environment {env!r} (one of {ENVIRONMENTS})")
    return yaml.safe_load((HERE / "values" / f"{env}.yaml").read_text())  # type: ignore[no-any-return]


def render_dagster(values: dict[str, Any]) -> list[dict[str, Any]]:
    tpl_env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")),
                                 undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    text = tpl_env.get_template("dagster.yaml.j2").render(**values)
    return [d for d in yaml.safe_load_all(text) if d]


def render_apps(values: dict[str, Any]) -> list[dict[str, Any]]:
    from rdg_platform.assets.streaming_control.registry import load_apps
    from rdg_platform.launcher.kubernetes import AppResources, KubernetesConfig, build_deployment
    from rdg_platform.model.spec import default_spec

    sa = values["streamingApps"]
    default = AppResources.from_mapping(sa.get("default") or {})
    per_app = {k: AppResources.from_mapping(v, default) for k, v in (sa.get("perApp") or {}).items()}
    cfg = KubernetesConfig(namespace=values["namespace"], image=values["image"],
                           image_pull_policy=values["imagePullPolicy"], service_account="rdg-streaming",
                           env_from_secret="rdg-platform-secrets", default_resources=default, app_resources=per_app)
    return [build_deployment(a, cfg) for a in load_apps(default_spec())]


def render(env: str) -> list[dict[str, Any]]:
    values = load_values(env)
    return render_dagster(values) + render_apps(values)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", choices=ENVIRONMENTS, default="local")
    args = ap.parse_args(argv)
    yaml.safe_dump_all(render(args.env), sys.stdout, sort_keys=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
