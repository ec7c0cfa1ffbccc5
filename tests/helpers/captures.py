"""Reading and reshaping the shared captures for tests (never copied into the repo)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def rewrite(path: Path, out: Path, change: Callable[[dict], dict | None]) -> Path:
    """A variant of a capture: ``change`` may alter a record or drop it (None)."""
    lines = []
    for record in load(path):
        changed = change(dict(record))
        if changed is not None:
            lines.append(json.dumps(changed, ensure_ascii=False))
    out.write_text("\n".join(lines) + "\n", "utf-8")
    return out


def replace_in_raw(old: str, new: str) -> Callable[[dict], dict]:
    def change(record: dict) -> dict:
        record["raw"] = record["raw"].replace(old, new)
        return record

    return change
