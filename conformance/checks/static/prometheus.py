"""Static checks of monitoring (guide 6.2): Prometheus configuration, rules, Grafana provisioning.

`promtool check config` and `promtool check rules` decide validity; the checks here judge what
promtool accepts but cannot do its job (jobs without targets, rule files that are not there,
missing alerts, unbounded storage).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conformance.checks.registry import CheckContext
from conformance.checks.static.base import (
    ArtifactError,
    LineDict,
    LineList,
    NotApplicable,
    Problem,
    line_of,
    load_yaml,
    static_check,
)
from conformance.checks.static.composefile import (
    app_service,
    command_text,
    each_service,
    image_of,
    load_compose,
    volume_sources,
)
from conformance.checks.static.env import load_env
from conformance.checks.static.tools import ToolResult, line_of_text, require_tool, run_tool

#: Critical conditions (guide 6.2) and how an alert expression that covers them reads.
CRITICAL_CONDITIONS = {
    "app down": re.compile(r"\bup\b[^\n]*==\s*0|absent\(\s*up"),
    "high error rate": re.compile(r"status(_code)?\s*=~\s*\"5|code\s*=~\s*\"5"),
    "queue backlog": re.compile(r"taskforge_queue_length|taskforge_job_wait_duration"),
    "database down": re.compile(r"pg_up\b|taskforge_db_|postgres"),
    "disk": re.compile(r"node_filesystem_(avail|free)_bytes|disk", re.IGNORECASE),
}


@dataclass(frozen=True, kw_only=True, slots=True)
class RuleFile:
    path: Path
    data: Any


def _config(context: CheckContext) -> tuple[Path, LineDict]:
    assert context.prometheus_config is not None  # guaranteed by needs
    path = context.prometheus_config
    data = load_yaml(path)
    if data is None:
        data = LineDict()
        data.lines = {}
    if not isinstance(data, LineDict):
        raise ArtifactError(path, "the top level is not a mapping", 1)
    return path, data


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def _local_matches(path: Path, pattern: str) -> list[Path]:
    """Where a rule_files entry is here: relative to the configuration, or a container path
    mapped onto the configuration's directory by its longest tail that exists here
    (/etc/prometheus/rules/*.yml -> rules/*.yml). The bare file name is tried only for a named
    file: a bare glob (*.yml) would take the configuration itself and its neighbours as rules."""
    candidate = Path(pattern)
    if not candidate.is_absolute():
        candidate = path.parent / candidate
    tails: list[Path] = [candidate]
    parts = Path(pattern).parts[1:] if Path(pattern).is_absolute() else ()
    minimum = 1 if not _is_glob(Path(pattern).name) else 2
    tails += [path.parent.joinpath(*parts[i:]) for i in range(len(parts) - minimum + 1)]
    for tail in tails:
        if tail.parent.is_dir():
            matches = sorted(m for m in tail.parent.glob(tail.name) if m != path)
            if matches:
                return matches
    return []


def _rule_paths(
    context: CheckContext, path: Path, config: LineDict
) -> list[tuple[Path, int | None]]:
    """The rule files: those given, and those rule_files names (container paths mapped here).
    A glob that matches nothing here is left out: Prometheus accepts an empty glob, and its
    files may simply not have been given (`unresolved_rule_globs`)."""
    found: list[tuple[Path, int | None]] = [(p, None) for p in context.prometheus_rules]
    rule_files = config.get("rule_files")
    if isinstance(rule_files, list):
        for index, pattern in enumerate(rule_files):
            line = line_of(rule_files, index)
            matches = _local_matches(path, str(pattern))
            if not matches and not _is_glob(str(pattern)):
                candidate = Path(str(pattern))
                if not candidate.is_absolute():
                    candidate = path.parent / candidate
                found.append((candidate, line))  # reported missing by PROM-CONFIG-VALID
            found += [(m, line) for m in matches if m not in {p for p, _ in found}]
    return found


def _unresolved_rule_globs(path: Path, config: LineDict) -> list[str]:
    rule_files = config.get("rule_files")
    if not isinstance(rule_files, list):
        return []
    return [str(p) for p in rule_files if _is_glob(str(p)) and not _local_matches(path, str(p))]


def _load_rules(rule_path: Path) -> Any:
    return load_yaml(rule_path)


def _scrape_configs(config: LineDict) -> list[tuple[int | None, LineDict]]:
    scrapes = config.get("scrape_configs")
    if not isinstance(scrapes, LineList):
        return []
    return [(line_of(scrapes, i), s) for i, s in enumerate(scrapes) if isinstance(s, LineDict)]


def _targets(job: LineDict) -> list[str]:
    targets: list[str] = []
    for static in job.get("static_configs") or []:
        if isinstance(static, dict):
            targets += [str(t) for t in static.get("targets") or []]
    return targets


def _promtool_problems(result: ToolResult, default_file: Path) -> Iterator[Problem]:
    """Each error promtool reports after FAILED (on that line or the lines below), at the line
    it names or else the line of the value it quotes."""
    failed = False
    for text in result.output.splitlines():
        if "FAILED" in text:
            failed, text = True, text.split("FAILED", 1)[1].lstrip(": ")
        if not failed or not text.strip() or text.lstrip().startswith(("Checking", "SUCCESS")):
            continue
        message = text.strip()
        file = default_file
        named = re.match(r"(?:parsing YAML file )?(/\S+?):\s", message)
        if named and Path(named.group(1)).is_file():
            file = Path(named.group(1))
        line_match = re.search(r"\bline (\d+)|:(\d+):\d+:", message)
        quoted = re.search(r'"([^"]+)"', message)
        line = (int(line_match.group(1) or line_match.group(2)) if line_match else
                line_of_text(file, quoted.group(1)) if quoted else None)
        yield Problem(message=f"promtool: {message}", file=file, line=line or 1,
                      expected="promtool reports SUCCESS", actual="FAILED")


@static_check(
    "PROM-CONFIG-VALID", needs=("prometheus_config",),
    ok="promtool accepts the configuration and its rule files",
)
def config_valid(context: CheckContext) -> Iterator[Problem]:
    """promtool decides what Prometheus accepts; what it accepts but cannot work is judged here."""
    promtool = require_tool("promtool")
    path, config = _config(context)
    # --syntax-only: rule_files name container paths; the rule files are checked one by one.
    result = run_tool([promtool, "check", "config", "--syntax-only", str(path)], path)
    if result.returncode != 0:
        yield from _promtool_problems(result, path)
    for line, job in _scrape_configs(config):
        name = job.get("job_name")
        if name and not any(k == "static_configs" or k.endswith("_sd_configs") for k in job):
            yield Problem(message=f"job {name} has no targets (static_configs or *_sd_configs)",
                          file=path, line=line, expected="static_configs: [targets: [...]]",
                          actual="none")
    for rule_path, line in _rule_paths(context, path, config):
        if not rule_path.is_file():
            yield Problem(message=f"rule file {rule_path.name} does not exist", file=path,
                          line=line, expected=str(rule_path), actual="missing")
            continue
        result = run_tool([promtool, "check", "rules", str(rule_path)], rule_path)
        if result.returncode != 0:
            yield from _promtool_problems(result, rule_path)


@static_check(
    "PROM-SCRAPE-APP", needs=("prometheus_config",), ok="a job scrapes the app's metrics endpoint"
)
def scrape_app(context: CheckContext) -> Iterator[Problem]:
    path, config = _config(context)
    env = load_env(context)
    endpoint = (env.get("METRICS_ENDPOINT") if env is not None else None) or "/metrics"
    app_names = {"app", "taskforge", "taskforge_app"}
    if context.compose_file is not None:
        found = app_service(load_compose(context))
        if found is not None:
            app_names.add(found[0])
    jobs = _scrape_configs(config)
    app_jobs = [
        (line, job) for line, job in jobs
        if any(t.split(":")[0] in app_names for t in _targets(job))
        or "taskforge" in str(job.get("job_name", ""))
    ]
    if not app_jobs:
        yield Problem(
            message="no scrape job targets the app", file=path,
            line=line_of(config, "scrape_configs"),
            expected=f"a job with targets ['app:8000'] and metrics_path {endpoint}",
            actual=", ".join(str(j.get("job_name")) for _, j in jobs) or "no jobs",
        )
        return
    for line, job in app_jobs:
        metrics_path = str(job.get("metrics_path") or "/metrics")
        if metrics_path != endpoint:
            yield Problem(
                message=f"job {job.get('job_name')} scrapes {metrics_path}, but the app serves "
                f"metrics at {endpoint} (METRICS_ENDPOINT)", file=path,
                line=line_of(job, "metrics_path", line), expected=endpoint, actual=metrics_path,
            )


@static_check(
    "PROM-SCRAPE-DATABASE", needs=("prometheus_config",), ok="a PostgreSQL exporter is scraped"
)
def scrape_database(context: CheckContext) -> Iterator[Problem]:
    path, config = _config(context)
    for _line, job in _scrape_configs(config):
        text = str(job.get("job_name", "")) + " " + " ".join(_targets(job))
        if re.search(r"postgres|pg[_-]?exporter|:9187\b", text, re.IGNORECASE):
            return
    yield Problem(
        message="no scrape job for a PostgreSQL exporter: the database is not monitored",
        file=path, line=line_of(config, "scrape_configs"),
        expected="a job scraping postgres-exporter (:9187)", actual="none",
    )


@static_check(
    "PROM-ALERT-RULES", needs=("prometheus_config",),
    ok="alert rules cover app down, errors, backlog, database down and disk",
)
def alert_rules(context: CheckContext) -> Iterator[Problem]:
    path, config = _config(context)
    expressions: list[str] = []
    for rule_path, _line in _rule_paths(context, path, config):
        if not rule_path.is_file():
            continue
        data = _load_rules(rule_path)
        for group in (data.get("groups") or []) if isinstance(data, dict) else []:
            for rule in (group.get("rules") or []) if isinstance(group, dict) else []:
                if isinstance(rule, dict) and "alert" in rule:
                    expressions.append(f"{rule.get('alert')} {rule.get('expr')}")
    alerting = config.get("alerting")
    managers = alerting.get("alertmanagers") if isinstance(alerting, dict) else None
    unresolved = _unresolved_rule_globs(path, config)
    if not expressions and unresolved and not context.prometheus_rules and managers:
        raise NotApplicable(
            f"rule_files {', '.join(unresolved)} match no file beside the configuration: "
            "give the rule files with --prometheus-rules to judge the alert rules"
        )
    if not managers:
        yield Problem(
            message="no Alertmanager is configured: alerts fire and notify nobody", file=path,
            line=line_of(config, "alerting", 1),
            expected="alerting: alertmanagers: [static_configs: [targets: [alertmanager:9093]]]",
            actual="none",
        )
    if not expressions:
        yield Problem(message="no alert rules are loaded", file=path,
                      line=line_of(config, "rule_files", 1),
                      expected="rule_files: [alerts.yml] with alert rules", actual="none")
        return
    for condition, pattern in CRITICAL_CONDITIONS.items():
        if not any(pattern.search(e) for e in expressions):
            yield Problem(
                message=f"no alert rule for {condition}", file=path,
                line=line_of(config, "rule_files", 1), expected=f"an alert on {condition}",
                actual="none",
            )


# --- Grafana ----------------------------------------------------------------------------------


def _grafana_mounts(context: CheckContext) -> tuple[Path, int | None, list[tuple[str, Path]]]:
    """The compose file, the grafana service line, and its (container path, host path) mounts."""
    compose = load_compose(context)
    for name, service in each_service(compose):
        if "grafana" in name or "grafana" in str(service.get("image") or ""):
            mounts = [
                (target.rstrip("/"), (compose.path.parent / source).resolve())
                for source, target, _line in volume_sources(service)
                if source.startswith((".", "/"))
            ]
            return compose.path, compose.service_line(name), mounts
    return compose.path, None, []


def _host_path(container: str, mounts: list[tuple[str, Path]]) -> Path | None:
    for target, source in sorted(mounts, key=lambda m: -len(m[0])):
        if container == target or container.startswith(target + "/"):
            return source / container[len(target) :].lstrip("/")
    return None


def _yaml_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted([*directory.glob("*.yml"), *directory.glob("*.yaml")])


@static_check(
    "GRAFANA-DASHBOARD-PROVISIONED", needs=("compose_file",),
    ok="Grafana is provisioned with Prometheus and a TaskForge dashboard",
)
def grafana_dashboard(context: CheckContext) -> Iterator[Problem]:
    compose_path, line, mounts = _grafana_mounts(context)
    if line is None:
        yield Problem(message="no Grafana service", file=compose_path, line=1,
                      expected="a grafana service with provisioning", actual="none")
        return
    provisioning = _host_path("/etc/grafana/provisioning", mounts)
    if provisioning is None or not provisioning.is_dir():
        yield Problem(message="Grafana's /etc/grafana/provisioning is not mounted from a directory",
                      file=compose_path, line=line,
                      expected="./grafana/provisioning:/etc/grafana/provisioning",
                      actual=str(provisioning) if provisioning else "not mounted")
        return
    datasources = [load_yaml(p) for p in _yaml_files(provisioning / "datasources")]
    if not any(
        isinstance(d, dict) and any(
            isinstance(s, dict) and s.get("type") == "prometheus"
            for s in d.get("datasources") or []
        ) for d in datasources
    ):
        yield Problem(message="no Prometheus datasource is provisioned",
                      file=provisioning / "datasources", line=None,
                      expected="datasources: [{type: prometheus, url: http://prometheus:9090}]",
                      actual="none")
    dashboards: list[Path] = []
    for provider_file in _yaml_files(provisioning / "dashboards"):
        data = load_yaml(provider_file)
        for provider in (data.get("providers") or []) if isinstance(data, dict) else []:
            options = provider.get("options") if isinstance(provider, dict) else None
            folder = options.get("path") if isinstance(options, dict) else None
            host = _host_path(str(folder), mounts) if folder else None
            if host is None or not host.is_dir():
                yield Problem(message=f"dashboard provider path {folder} is not mounted",
                              file=provider_file, line=line_of(options, "path"),
                              expected="a path under a mounted directory", actual=str(folder))
                continue
            dashboards += sorted(host.glob("*.json"))
    if not dashboards:
        yield Problem(message="no dashboard JSON is provisioned", file=provisioning, line=None,
                      expected="dashboards/*.yml provider pointing at *.json", actual="none")
        return
    covered = False
    for dashboard in dashboards:
        try:
            document = json.loads(dashboard.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            yield Problem(message=f"dashboard {dashboard.name} is not JSON: {exc}", file=dashboard,
                          line=getattr(exc, "lineno", None))
            continue
        if "taskforge_" in json.dumps(document.get("panels", [])):
            covered = True
    if not covered:
        yield Problem(message="no dashboard panel queries the taskforge_* metrics",
                      file=dashboards[0], line=None,
                      expected="panels over taskforge_* metrics", actual="none")


# --- retention --------------------------------------------------------------------------------

DEFAULT_RETENTION_DAYS = 15  # Prometheus' own default --storage.tsdb.retention.time
_DURATION_DAYS = {"y": 365.0, "w": 7.0, "d": 1.0, "h": 1 / 24, "m": 1 / 1440, "s": 1 / 86400}


def _days(duration: str) -> float | None:
    parts = re.findall(r"(\d+)(ms|y|w|d|h|m|s)", duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        return None
    return sum(int(n) * _DURATION_DAYS.get(u, 0.0) for n, u in parts)


@static_check(
    "PROM-RETENTION-BOUNDED", needs=("compose_file",),
    ok="Prometheus' storage is bounded in size as well as in time",
)
def retention_bounded(context: CheckContext) -> Iterator[Problem]:
    compose = load_compose(context)
    servers = [(n, s) for n, s in each_service(compose)
               if image_of(s).rsplit("/", 1)[-1].startswith("prometheus")]
    if not servers:
        raise NotApplicable("no Prometheus service in the compose file")
    for name, service in servers:
        command = compose.interpolate(command_text(service.get("command")))
        time_match = re.search(r"--storage\.tsdb\.retention\.time[= ](\S+)", command)
        if "--storage.tsdb.retention.size" in command or time_match is None:
            continue  # size-bounded, or Prometheus' 15-day default
        days = _days(time_match.group(1).strip("'\""))
        if days is None or days <= DEFAULT_RETENTION_DAYS:
            continue
        start = compose.service_line(name, "command") or 1
        yield Problem(
            message=f"service {name} keeps {time_match.group(1)} of samples with no "
            "--storage.tsdb.retention.size: nothing bounds the TSDB on its volume, which shares "
            "the host disk (guide 2.1: 50 GB for everything) with PostgreSQL and the backups; "
            "when it fills, the database stops too",
            file=compose.path, line=compose.find_line("retention.time", start) or start,
            expected="--storage.tsdb.retention.size=<part of the volume>, e.g. 10GB",
            actual=f"retention.time={time_match.group(1)}, no size limit",
        )
