"""The catalogue of guide items: loads and validates every `conformance/catalogue/*.yaml` file.

Each file holds `items:`, a list of entries (see `CatalogueEntry`). A malformed file raises
`CatalogueError` naming the file and line, which the command line prints as one line (exit 2).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from conformance.model import CatalogueEntry, Kind, Phase, Severity

CATALOGUE_DIR = Path(__file__).parent / "catalogue"
GUIDE_PATH = Path(__file__).parent / "guide.md"

_ID_PATTERN = r"^[A-Z][A-Z0-9]*(-[A-Z0-9]+)+$"
_SECTION_PATTERN = r"^[1-9][0-9]*(\.[1-9][0-9]*)*$"


class CatalogueError(ValueError):
    """A catalogue file that cannot be used; the message starts with `file:line:`."""

    def __init__(self, path: Path, line: int | None, problem: str) -> None:
        self.path = path
        self.line = line
        self.problem = problem
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")


class _EntryModel(BaseModel):
    """The schema of one entry as written in YAML (strict: unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=_ID_PATTERN)
    section: str = Field(pattern=_SECTION_PATTERN)
    guide_text: str = Field(min_length=3)
    title: str = Field(min_length=3)
    phase: Phase
    severity: Severity
    kind: Kind
    rationale: str = Field(min_length=3)
    remediation: str = Field(min_length=3)
    attestation: str | None = None

    @model_validator(mode="after")
    def _attestation_matches_kind(self) -> _EntryModel:
        if self.kind is Kind.ATTESTED and not self.attestation:
            raise ValueError("an attested item needs an `attestation` rule (what attests it)")
        if self.kind is Kind.AUTOMATED and self.attestation:
            raise ValueError("an automated item takes no `attestation` rule")
        return self


def guide_order(section: str) -> tuple[int, ...]:
    """Sort key of a guide section: "2.1" < "3.1" < "10.1" (numeric, not lexical)."""
    try:
        return tuple(int(part) for part in section.split("."))
    except ValueError:
        return (10**6,)


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("*", "").replace("`", "")).strip()


def _guide_position(guide: str, text: str) -> int:
    """Where the item's words first appear in the guide (items of one section keep its order)."""
    position = guide.find(_normalise(text))
    return position if position >= 0 else len(guide)


def _entries_of(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """The raw entries of one file with the line each starts on."""
    try:
        text = path.read_text(encoding="utf-8")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except OSError as exc:
        raise CatalogueError(path, None, f"cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise CatalogueError(path, line, f"not valid YAML: {problem}") from None
    if not isinstance(data, dict) or not isinstance(data.get("items"), list):
        raise CatalogueError(path, 1, "expected a mapping with an `items:` list")
    assert isinstance(node, yaml.MappingNode)  # data is a dict, so the root node is a mapping
    items_node = next(v for k, v in node.value if k.value == "items")
    assert isinstance(items_node, yaml.SequenceNode)
    return [
        (item_node.start_mark.line + 1, raw)
        for item_node, raw in zip(items_node.value, data["items"], strict=True)
    ]


def _validate(path: Path, line: int, raw: Any) -> CatalogueEntry:
    if not isinstance(raw, dict):
        raise CatalogueError(path, line, "an item must be a mapping")
    # YAML reads `section: 7` or `3.1` as numbers; the section is text.
    if isinstance(raw.get("section"), int | float) and not isinstance(raw.get("section"), bool):
        raise CatalogueError(path, line, f"section must be quoted text, e.g. \"{raw['section']}\"")
    try:
        model = _EntryModel.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "item"
        item_id = raw.get("id", "?")
        message = first["msg"].removeprefix("Value error, ")
        raise CatalogueError(path, line, f"item {item_id}: {field}: {message}") from None
    return CatalogueEntry(**model.model_dump())


def load_catalogue(
    paths: Iterable[Path] | None = None, guide_path: Path = GUIDE_PATH
) -> dict[str, CatalogueEntry]:
    """Every entry of the catalogue files, keyed by ID, in guide order.

    Guide order: by section number, then by where the item's words appear in the guide.
    """
    files = sorted(CATALOGUE_DIR.glob("*.yaml")) if paths is None else list(paths)
    guide = _normalise(guide_path.read_text(encoding="utf-8")) if guide_path.exists() else ""
    seen: dict[str, tuple[Path, int]] = {}
    ordered: list[tuple[tuple[int, ...], int, int, CatalogueEntry]] = []
    for path in files:
        for line, raw in _entries_of(path):
            entry = _validate(path, line, raw)
            if entry.id in seen:
                first_path, first_line = seen[entry.id]
                raise CatalogueError(
                    path, line, f"duplicate ID {entry.id} (first at {first_path}:{first_line})"
                )
            seen[entry.id] = (path, line)
            key = (guide_order(entry.section), _guide_position(guide, entry.guide_text))
            ordered.append((*key, len(ordered), entry))
    ordered.sort(key=lambda t: (t[0], t[1], t[2]))
    return {entry.id: entry for *_, entry in ordered}
