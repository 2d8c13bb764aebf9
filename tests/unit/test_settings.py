"""The settings object: names, sources, validation messages, masking, and that nothing else reads
the environment."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from rdg_platform.settings import SettingsError, load_settings, setting_names

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "rdg_platform"

# The names DESIGN.md fixes ("Settings"); the model may add more but must keep these.
DESIGN_NAMES = {
    "RDG_STATE_DIR", "RDG_CACHE_DIR", "RDG_KAFKA_BOOTSTRAP", "RDG_KAFKA_SECURITY_PROTOCOL",
    "RDG_KAFKA_SASL_MECHANISM", "RDG_KAFKA_SASL_USERNAME", "RDG_KAFKA_SASL_PASSWORD", "RDG_KAFKA_SSL_CA",
    "RDG_REGISTRY_URL", "RDG_REGISTRY_USERNAME", "RDG_REGISTRY_PASSWORD", "RDG_CASSANDRA_CONTACT_POINTS",
    "RDG_CASSANDRA_PORT", "RDG_CASSANDRA_LOCAL_DC", "RDG_CASSANDRA_USERNAME", "RDG_CASSANDRA_PASSWORD",
    "RDG_CASSANDRA_SSL_CA", "RDG_API_URL", "RDG_API_TOKEN", "RDG_ICEBERG_CATALOG_URI",
    "RDG_ICEBERG_WAREHOUSE", "RDG_SPARK_MASTER",
}


def test_design_names_are_settings() -> None:
    assert DESIGN_NAMES <= set(setting_names())


def test_env_values_reach_the_nested_model() -> None:
    s = load_settings({"RDG_KAFKA_BOOTSTRAP": "k1:9, k2:9", "RDG_CASSANDRA_CONTACT_POINTS": "c1, c2",
                       "RDG_REGISTRY_URL": "http://r:1/x", "RDG_KAFKA_SASL_PASSWORD": "pw",
                       "RDG_STREAMING_SINK_GROUPS": '{"all": ["node.*", "edge.*"]}'})
    assert s.kafka.bootstrap_servers == "k1:9, k2:9"
    assert s.cassandra.hosts == ["c1", "c2"]
    assert s.registry.base_url == "http://r:1/x"
    assert s.kafka.sasl_password is not None and s.kafka.sasl_password.get_secret_value() == "pw"
    assert s.streaming.sink_groups == {"all": ["node.*", "edge.*"]}


def test_defaults_are_local_and_derived_from_ports() -> None:
    s = load_settings({"RDG_KAFKA_PORT": "19092", "RDG_API_PORT": "18000"})
    assert s.kafka.bootstrap_servers == "127.0.0.1:19092"
    assert s.api.base_url == "http://127.0.0.1:18000"
    assert s.cassandra.hosts == ["127.0.0.1"]


def test_bad_value_names_the_variable() -> None:
    with pytest.raises(SettingsError, match=r"RDG_KAFKA_PORT='x'.*integer"):
        load_settings({"RDG_KAFKA_PORT": "x"})
    with pytest.raises(SettingsError, match=r"RDG_STREAMING_OFFSET_RESET='middle'"):
        load_settings({"RDG_STREAMING_OFFSET_RESET": "middle"})


def test_file_then_env_precedence_and_sources(tmp_path: Path) -> None:
    f = tmp_path / "rdg.yaml"
    f.write_text(yaml.safe_dump({"RDG_SPARK_MASTER": "spark://m:7077", "RDG_API_PORT": 8100}))
    s = load_settings({"RDG_CONFIG": str(f), "RDG_API_PORT": "8200"})
    assert s.spark.master == "spark://m:7077"
    assert s.api.port == 8200
    src = s.sources()
    assert (src["RDG_SPARK_MASTER"], src["RDG_API_PORT"], src["RDG_KAFKA_PORT"]) == ("file", "env", "default")


def test_unknown_file_key_is_an_error(tmp_path: Path) -> None:
    f = tmp_path / "rdg.yaml"
    f.write_text("RDG_KAFKA_PROT: 1\n")
    with pytest.raises(SettingsError, match="unknown setting 'RDG_KAFKA_PROT'"):
        load_settings({"RDG_CONFIG": str(f)})


def test_child_env_round_trips() -> None:
    s = load_settings({"RDG_CASSANDRA_PASSWORD": "sekret", "RDG_STREAMING_DEDUP_WINDOW_S": "2.5",
                       "RDG_API_GC_FREEZE": "0", "RDG_CASSANDRA_CONTACT_POINTS": "a,b"})
    env = s.child_env(base={"PATH": "/bin", "RDG_STALE": "x"})
    assert env["PATH"] == "/bin" and "RDG_STALE" not in env
    again = load_settings(env)
    assert again.model_dump() == s.model_dump()
    assert again.cassandra.password is not None and again.cassandra.password.get_secret_value() == "sekret"


def test_config_show_masks_secrets_and_names_sources() -> None:
    from rdg_platform.cli import app

    env = {"RDG_CASSANDRA_PASSWORD": "hunter2-secret", "RDG_API_TOKEN": "tok-secret", "RDG_SPARK_MASTER": "local[1]"}
    result = CliRunner().invoke(app, ["config", "show"], env=env)
    assert result.exit_code == 0, result.output
    assert "hunter2-secret" not in result.output and "tok-secret" not in result.output
    line = next(ln for ln in result.output.splitlines() if ln.startswith("RDG_CASSANDRA_PASSWORD"))
    assert "env" in line and "********" in line
    assert re.search(r"RDG_SPARK_MASTER\s+env\s+local\[1\]", result.output)


def test_bad_setting_stops_a_command_with_its_name() -> None:
    from rdg_platform.cli import app

    result = CliRunner().invoke(app, ["config", "show"], env={"RDG_API_PORT": "eighty"})
    assert result.exit_code == 2
    assert "RDG_API_PORT='eighty'" in result.output


def _environment_reads(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb"):
            hits.append(f"{path.relative_to(ROOT)}:{node.lineno}")
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            if any(a.name in ("environ", "getenv", "environb") for a in node.names):
                hits.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return hits


def test_only_settings_reads_the_environment() -> None:
    allowed = {PACKAGE / "settings.py"}
    hits = [h for p in sorted(PACKAGE.rglob("*.py")) if p not in allowed for h in _environment_reads(p)]
    assert hits == [], "modules reading os.environ/getenv outside rdg_platform/settings.py: " + ", ".join(hits)


def test_readme_settings_table_matches_the_model() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Settings", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `(RDG_[A-Z0-9_]+)`", section, flags=re.M))
    assert documented == set(setting_names()) | {"RDG_CONFIG"}, (
        f"missing from README: {sorted(set(setting_names()) - documented)}; "
        f"not settings: {sorted(documented - set(setting_names()) - {'RDG_CONFIG'})}")


def test_env_role_exports_that_roles_credentials(tmp_path: Path) -> None:
    import json
    import shlex

    from rdg_platform.cli import app

    state = tmp_path / "state"
    result = CliRunner().invoke(app, ["env", "--role", "reader"], env={"RDG_STATE_DIR": str(state)})
    assert result.exit_code == 0, result.output
    exports = dict(shlex.split(line.removeprefix("export "))[0].split("=", 1) for line in result.output.splitlines())
    stored = json.loads((state / "secrets" / "credentials.json").read_text())
    assert exports["RDG_CASSANDRA_USERNAME"] == "rdg_reader"
    assert exports["RDG_CASSANDRA_PASSWORD"] == stored["passwords"]["reader"]
    assert exports["RDG_API_TOKEN"] == stored["api_tokens"]["reader"]
    assert exports["RDG_CASSANDRA_CONTACT_POINTS"] == "127.0.0.1"
    assert oct((state / "secrets" / "credentials.json").stat().st_mode & 0o777) == "0o600"
    again = load_settings({k: v for k, v in exports.items()})
    assert again.kafka.sasl_username == "rdg_reader"
    bad = CliRunner().invoke(app, ["env", "--role", "root"], env={"RDG_STATE_DIR": str(state)})
    assert bad.exit_code == 2 and "upstream, app, reader, admin" in bad.output


def test_deploy_values_use_the_settings_names() -> None:
    names = set(setting_names())
    for values in sorted((ROOT / "deploy" / "values").glob("*.yaml")):
        doc = yaml.safe_load(values.read_text())
        env = doc.get("platformEnv") or {}
        assert env, f"{values.name} sets no platformEnv"
        unknown = sorted(set(env) - names)
        assert not unknown, f"{values.name}: {unknown} are not settings (see rdg_platform/settings.py)"
