"""The README's scheme table, generated from the registry: `python -m service.engine.schemes.table` rewrites it
between its markers (tests/engine/test_scheme_table.py fails while the README is out of date)."""

from __future__ import annotations

import json
from pathlib import Path

from service.engine.schemes.registry import ALL_SCHEMES, REGISTRY_BARE, SCHEMES, Param, Scheme

START, END = "<!-- schemes:start -->", "<!-- schemes:end -->"
README = Path(__file__).resolve().parents[3] / "README.md"


def _param(param: Param) -> str:
    return param.name if param.required else f"{param.name}={param.default!r}"


def _row(scheme: Scheme) -> str:
    name = f"`{scheme.name}` (alias of `{scheme.alias_of}`)" if scheme.alias_of else f"`{scheme.name}`"
    params = ", ".join(_param(p) for p in scheme.params) or "—"
    source = f"`{scheme.source}`" + (f"; {scheme.paper}" if scheme.paper else "")
    example = json.dumps({"scheme": scheme.name, **scheme.example}, separators=(",", ":"))
    cells = (name, scheme.family, params, scheme.formula, source, f"`{example}`")
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _same_as_bare(scheme: Scheme) -> bool:
    """A namespaced name whose meaning is its bare name's, parameters and all."""
    bare = REGISTRY_BARE.get(scheme.name.partition(".")[2])
    return bare is not None and bare.build is scheme.build and bare.params == scheme.params


def markdown() -> str:
    header = "| scheme | family | parameters (defaults) | distribution | source | example |\n|---|---|---|---|---|---|"
    namespaced = [s for s in ALL_SCHEMES if s not in SCHEMES]
    copies = ", ".join(f"`{s.name}`" for s in namespaced if _same_as_bare(s))
    own = [_row(s) for s in namespaced if not _same_as_bare(s)]
    return "\n".join(
        [
            header,
            *(_row(s) for s in SCHEMES),
            "",
            f"The same meaning as their bare names, under the framework's namespace: {copies}. Their own meaning:",
            "",
            header,
            *own,
        ]
    )


def rewrite(readme: str) -> str:
    """`readme` with the text between the markers replaced by the current table."""
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{markdown()}\n{END}{tail}"


if __name__ == "__main__":
    README.write_text(rewrite(README.read_text()))
