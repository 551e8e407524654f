"""What every static check shares: problems found at a file and line, turned into findings.

A static check is a function of the context that yields `Problem`s; no problem means the item
passed. `ArtifactError` (a file that cannot be read or parsed) becomes an error finding, and
`NotApplicable` a not-applicable one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from conformance.checks.registry import CheckContext, check
from conformance.model import Evidence, Finding, Status


@dataclass(frozen=True, kw_only=True, slots=True)
class Problem:
    """One defect of an artifact, where it is and what was expected."""

    message: str
    file: Path | None = None
    line: int | None = None
    expected: str | None = None
    actual: str | None = None
    section: str | None = None  # the guide section, when not the item's own (procedures)


class ArtifactError(Exception):
    """An artifact that cannot be read or parsed; the check cannot judge it."""

    def __init__(self, file: Path, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.file = file
        self.line = line


class NotApplicable(Exception):
    """The item does not apply to these artifacts (e.g. no Redis service at all)."""


def file_evidence(file: Path | None, line: int | None, summary: str = "") -> Evidence:
    return Evidence(
        kind="file", file=str(file) if file is not None else None, line=line, summary=summary
    )


@functools.cache
def _sections() -> dict[str, str]:
    """Item ID -> guide section, from the catalogue (read once)."""
    from conformance.catalogue import load_catalogue

    try:
        return {item: entry.section for item, entry in load_catalogue().items()}
    except ValueError:  # a malformed catalogue is reported by the command line, not here
        return {}


def _located(item_id: str, file: Path | None, line: int | None, summary: str,
             section: str | None = None) -> Evidence:
    """Evidence that always says where (file, line: 1 for the file as a whole) and which guide
    section it is about."""
    where = section or _sections().get(item_id)
    text = f"guide {where}: {summary}" if where else summary
    return file_evidence(file, (line or 1) if file is not None else line, text)


StaticFunction = Callable[[CheckContext], Iterable[Problem]]


def static_check(
    item_id: str, *, needs: Iterable[str] = (), ok: str = "no problem found",
    subject: Callable[[CheckContext], tuple[Path, str]] | None = None,
) -> Callable[[StaticFunction], Callable[[CheckContext], Iterator[Finding]]]:
    """Register a problem-yielding function as the check of one catalogue item.

    `subject`, when given, names a file judged beyond the `needs` (the procedures) and a note
    every finding of the item carries.
    """

    def decorate(function: StaticFunction) -> Callable[[CheckContext], Iterator[Finding]]:
        name = f"{function.__module__}.{function.__qualname__}"

        @functools.wraps(function)
        def run(context: CheckContext) -> Iterator[Finding]:
            judged, note = subject(context) if subject is not None else (None, "")
            for finding in judge(context, judged):
                yield replace(finding, message=f"{finding.message} ({note})") if note else finding

        def judge(context: CheckContext, judged: Path | None) -> Iterator[Finding]:
            values = [getattr(context, n) for n in needs]
            files = [v for v in values if isinstance(v, Path)]
            if judged is not None:
                files = [judged, *files]
            try:
                problems = list(function(context))
            except NotApplicable as exc:
                yield Finding(
                    item_id=item_id, status=Status.NOT_APPLICABLE, check=name, message=str(exc),
                    evidence=tuple(_located(item_id, f, None, str(exc)) for f in files),
                )
                return
            except ArtifactError as exc:
                yield Finding(
                    item_id=item_id,
                    status=Status.ERROR,
                    check=name,
                    message=f"cannot check {exc.file}: {exc}",
                    evidence=(_located(item_id, exc.file, exc.line, str(exc)),),
                )
                return
            if not problems:
                evidence = tuple(_located(item_id, f, None, ok) for f in files)
                yield Finding(
                    item_id=item_id, status=Status.PASSED, check=name, message=ok,
                    evidence=evidence,
                )
                return
            for problem in problems:
                file = problem.file if problem.file is not None else (files[0] if files else None)
                yield Finding(
                    item_id=item_id,
                    status=Status.FAILED,
                    check=name,
                    message=problem.message,
                    expected=problem.expected,
                    actual=problem.actual,
                    evidence=(_located(item_id, file, problem.line, problem.message,
                                       problem.section),),
                )

        check(item_id, needs=needs)(run)
        return run

    return decorate


# --- YAML with line numbers ------------------------------------------------------------------


class LineDict(dict[Any, Any]):
    """A mapping that remembers the line of each key (1-based) and its own first line."""

    line: int = 0
    lines: dict[Any, int]


class LineList(list[Any]):
    """A sequence that remembers the line of each item and its own first line."""

    line: int = 0
    lines: list[int]


class _LineLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)  # YAML merge keys (<<: *anchor), as Compose files use them
    mapping = LineDict()
    mapping.line = node.start_mark.line + 1
    mapping.lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.lines[key] = key_node.start_mark.line + 1
    return mapping


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> LineList:
    sequence = LineList(loader.construct_object(child, deep=True) for child in node.value)
    sequence.line = node.start_mark.line + 1
    sequence.lines = [child.start_mark.line + 1 for child in node.value]
    return sequence


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def load_yaml(path: Path) -> Any:
    """Parse a YAML file into LineDict/LineList; ArtifactError with the line when it cannot.

    Several checks read the same file: the parse is cached per path, size and modification time
    (callers must not modify what they get).
    """
    try:
        info = path.stat()
    except OSError as exc:
        raise ArtifactError(path, f"cannot read: {exc.strerror}") from None
    return _load_yaml_cached(path, info.st_mtime_ns, info.st_size)


@functools.lru_cache(maxsize=64)
def _load_yaml_cached(path: Path, _mtime_ns: int, _size: int) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ArtifactError(path, f"cannot read: {exc}") from None
    try:
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ArtifactError(
            path, f"not valid YAML: {problem}", mark.line + 1 if mark is not None else None
        ) from None


def line_of(container: Any, key: Any, default: int | None = None) -> int | None:
    """The line of a key of a LineDict or an index of a LineList."""
    if isinstance(container, LineDict):
        return container.lines.get(key, container.line or default)
    if isinstance(container, LineList) and isinstance(key, int) and key < len(container.lines):
        return container.lines[key]
    return getattr(container, "line", None) or default
