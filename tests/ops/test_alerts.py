"""deploy/: the Prometheus alert rules and the Grafana dashboard, checked with Prometheus's
own promtool (Debian's prometheus package) and against the metric names vod2s3 exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import missing_requirement
from vod2s3.metrics import DatabaseReading, Metrics
from vod2s3.store.coverage import VolumeWait

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "alerts.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "vod2s3.json"
# Grafana's own interval variables, given a duration so that promtool can parse the expr.
GRAFANA_INTERVALS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
METRIC_NAME = re.compile(r"\bvod2s3_[A-Za-z0-9_]+")


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        missing_requirement("promtool is missing: install Debian's prometheus package")
    return path


def run_promtool(*args: str) -> str:
    done = subprocess.run(
        [promtool(), *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def exported_metric_names() -> set[str]:
    """Every sample name a real registry exposes (``_total``, ``_bucket``...)."""
    metrics = Metrics()
    metrics.watch_database(
        lambda: DatabaseReading(
            depth={"queued": 1},
            volumes=(VolumeWait("sestore1", 1, 60.0, 0),),
            live_workers=0,
            callbacks_failing=0,
        )
    )
    # Labelled families without a default child show samples only once something is counted.
    metrics.upload_finished("completed", 12.0)
    metrics.api_request("aws.status", 200, {"aws.status"})
    metrics.bytes_sent(7, 1024)
    metrics.bandwidth_cap("worker", None, 10e6)
    text = metrics.exposition().decode()
    return {
        sample.name for family in text_string_to_metric_families(text) for sample in family.samples
    }


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(container: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, with those nested in (collapsed) rows."""
    for panel in container.get("panels", []):
        yield panel
        yield from panels(panel)


def dashboard_exprs() -> dict[str, str]:
    """Each target's expr by a name promtool accepts for a recording rule."""
    exprs = {
        f"grafana_panel_{panel['id']}_{target['refId']}": target["expr"]
        for panel in panels(dashboard())
        for target in panel.get("targets", [])
    }
    assert exprs, f"{DASHBOARD} has no panel with a query"
    return exprs


def unknown_names(expr: str, known: set[str]) -> set[str]:
    return set(METRIC_NAME.findall(expr)) - known


# -- Prometheus ---------------------------------------------------------------------------


def test_alert_rules_pass_promtool_check() -> None:
    output = run_promtool("check", "rules", str(ALERTS))
    assert f"SUCCESS: {len(alert_rules())} rules found" in output


def test_alert_rules_pass_their_unit_tests() -> None:
    run_promtool("test", "rules", str(ALERT_TESTS))


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    cases = [
        case
        for test in yaml.safe_load(ALERT_TESTS.read_text())["tests"]
        for case in test["alert_rule_test"]
    ]
    for rule in alert_rules():
        expected = [
            case.get("exp_alerts") or [] for case in cases if case["alertname"] == rule["alert"]
        ]
        assert any(expected), f"{rule['alert']}: no test where it fires"
        assert not all(expected), f"{rule['alert']}: no test where it stays quiet"


def test_every_alert_says_how_bad_and_what_to_do() -> None:
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]


def test_alert_rules_use_only_exported_metrics() -> None:
    known = exported_metric_names()
    for rule in alert_rules():
        assert not unknown_names(rule["expr"], known), rule["alert"]


# -- Grafana ------------------------------------------------------------------------------


def test_dashboard_uses_only_exported_metrics() -> None:
    known = exported_metric_names()
    for name, expr in dashboard_exprs().items():
        assert METRIC_NAME.search(expr), f"{name} queries no vod2s3 metric: {expr}"
        assert not unknown_names(expr, known), f"{name}: {expr}"


def test_dashboard_shows_every_exported_metric() -> None:
    families = {
        re.sub(r"_(total|bucket|count|sum|created)$", "", name) for name in exported_metric_names()
    }
    shown = {
        re.sub(r"_(total|bucket|count|sum|created)$", "", name)
        for expr in dashboard_exprs().values()
        for name in METRIC_NAME.findall(expr)
    }
    assert families - shown == set()


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    rules = []
    for name, expr in dashboard_exprs().items():
        for variable, duration in GRAFANA_INTERVALS.items():
            expr = expr.replace(variable, duration)
        assert "$" not in expr, f"{name}: a Grafana variable promtool cannot check: {expr}"
        rules.append({"record": name, "expr": expr})
    checked = tmp_path / "dashboard-rules.yml"
    checked.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    output = run_promtool("check", "rules", str(checked))
    assert f"SUCCESS: {len(rules)} rules found" in output


def test_dashboard_imports_into_any_grafana() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 39
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    # No data source uid of the machine it was made on: the one the viewer picks.
    chosen = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    ids = []
    for panel in panels(board):
        ids.append(panel["id"])
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == chosen, panel["title"]
        assert all(target["datasource"] == chosen for target in panel["targets"]), panel["title"]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
