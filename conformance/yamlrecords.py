"""Lists of small records in YAML files (waivers, attestations), read with their line numbers.

Errors name the file and the line of the offending node, so a malformed file stops the run with
`error: <file>:<line>: <problem>` instead of a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import yaml


class ConfigError(Exception):
    """A user-supplied file or option is unusable; the run stops with exit status 2."""

    def __init__(self, problem: str, *, file: Path | str | None = None, line: int | None = None):
        self.problem = problem
        self.file = str(file) if file is not None else None
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.file is None:
            return self.problem
        if self.line is None:
            return f"{self.file}: {self.problem}"
        return f"{self.file}:{self.line}: {self.problem}"


@dataclass(frozen=True, kw_only=True, slots=True)
class Record:
    """One mapping of the file: its scalar fields, where it starts, and where each field sits."""

    fields: dict[str, str]
    line: int
    field_lines: dict[str, int]
    file: Path

    def error(self, problem: str, field: str | None = None) -> ConfigError:
        line = self.field_lines.get(field, self.line) if field else self.line
        return ConfigError(problem, file=self.file, line=line)

    def text(self, field: str) -> str:
        value = self.fields.get(field, "").strip()
        if not value:
            raise self.error(f"missing '{field}'", field)
        return value

    def date(self, field: str) -> date:
        value = self.text(field)
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise self.error(f"'{field}' is not a date (YYYY-MM-DD): {value!r}", field) from None


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1  # marks count from 0, editors from 1


def read_records(
    path: Path, list_key: str, allowed: frozenset[str]
) -> Iterator[Record]:
    """The mappings under `list_key` (or a top-level list), each with only `allowed` scalar keys."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", file=path) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(f"not valid YAML: {exc.problem or exc.context}", file=path,
                          line=line) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", file=path) from None
    if root is None:
        return  # an empty file holds no records
    items = root
    if isinstance(root, yaml.MappingNode):
        found = [value for key, value in root.value
                 if isinstance(key, yaml.ScalarNode) and key.value == list_key]
        others = [key for key, _ in root.value
                  if not (isinstance(key, yaml.ScalarNode) and key.value == list_key)]
        if others:
            raise ConfigError(f"unexpected top-level key (expected only '{list_key}')",
                              file=path, line=_line(others[0]))
        if not found:
            raise ConfigError(f"no '{list_key}' list", file=path, line=_line(root))
        items = found[0]
        if isinstance(items, yaml.ScalarNode) and items.value in ("", "~", "null"):
            return
    if not isinstance(items, yaml.SequenceNode):
        raise ConfigError(f"'{list_key}' must be a list of mappings", file=path,
                          line=_line(items))
    for node in items.value:
        if not isinstance(node, yaml.MappingNode):
            raise ConfigError("each entry must be a mapping (key: value lines)", file=path,
                              line=_line(node))
        fields: dict[str, str] = {}
        lines: dict[str, int] = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                raise ConfigError("keys must be plain words", file=path, line=_line(key))
            name = key.value
            if name not in allowed:
                expected = ", ".join(sorted(allowed))
                raise ConfigError(f"unknown field '{name}' (expected {expected})", file=path,
                                  line=_line(key))
            if name in fields:
                raise ConfigError(f"'{name}' given twice", file=path, line=_line(key))
            if not isinstance(value, yaml.ScalarNode):
                raise ConfigError(f"'{name}' must be a single value", file=path,
                                  line=_line(value))
            fields[name] = value.value
            lines[name] = _line(value)
        yield Record(fields=fields, line=_line(node), field_lines=lines, file=path)
