"""Print the README's settings table from the settings model (paste it under "## Settings").

``tests/unit/test_settings.py`` fails when the README and the model disagree; this regenerates it.
"""

from __future__ import annotations

from pathlib import Path

from pydantic_core import PydanticUndefined

from rdg_platform.settings import Settings, iter_fields

DERIVED = {"RDG_KAFKA_BOOTSTRAP", "RDG_REGISTRY_URL", "RDG_API_URL"}


def main() -> None:
    home = str(Path.home())
    print("| variable | default | what |")
    print("|---|---|---|")
    print("| `RDG_CONFIG` | | optional YAML file with any of these names as keys; the environment wins over it |")
    for name, field in iter_fields(Settings):
        default = field.default
        shown = "" if default is None or default is PydanticUndefined else str(default).replace(home, "~")
        if isinstance(default, bool):
            shown = "1" if default else "0"
        if name in DERIVED:
            shown = "(derived)"
        cell = f"`{shown}`" if shown and not shown.startswith("(") else shown
        print(f"| `{name}` | {cell} | {field.description or ''} |")


if __name__ == "__main__":
    main()
