"""Lake health: one page in the Airflow UI with every configured table's lake at a glance.

An Airflow 3 plugin: a FastAPI app under ``/lake-health`` shown inside the UI through an
external view (``/plugin/lake-health``). Every path under the prefix needs the Airflow login
(plugin apps are unauthenticated by default): the UI's session cookie or a Bearer token.
FastAPI's own ``/docs``, ``/redoc`` and ``/openapi.json`` are turned off (they sit outside the
app's dependencies, and ``/docs`` loads Swagger UI from a CDN), and a path the app does not
serve answers 401 before it answers 404, so nothing is told to an anonymous caller.

Per table: the last backfill (when, the export time or window, rows, a link to its run), the
last reconciliation (status, T, table and lake counts, missing/extra/different, the method,
a link to its run), the lake's freshness (its newest stream row and that row's age), drift at
a glance, and a chart of the table and lake counts over the last 30 days with drift days
marked, drawn as inline SVG (nothing is fetched from the network). Statuses: ``ok`` and
``repaired`` (the rows written and a clean re-check) are green, ``inconclusive`` (keys not
ruled on at Athena's millisecond precision) amber, ``drift`` and ``error`` red; in the chart
a repaired day is a green ring, not a drift day. The figures come from the
core (:mod:`dynamo_lake.health`), which reads the documented contracts. The page follows
Airflow's light and dark themes.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote

from airflow.api_fastapi.core_api.security import requires_authenticated
from airflow.exceptions import AirflowNotFoundException
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse

# No /docs, /redoc, /openapi.json: FastAPI adds them outside the app's dependencies.
app = FastAPI(
    title="Lake health",
    dependencies=[Depends(requires_authenticated())],
    docs_url=None,
    redoc_url=None,
    openapi_url=None,
)

BACKFILL_DAG = "dynamodb_backfill"
RECONCILIATION_DAG = "dynamodb_reconciliation"


def _healths(request: Request) -> tuple[list[Any], str]:
    """Every configured table's health, and what stopped the tables file being read ("" if
    nothing did)."""
    # Heavy imports (pyarrow, the core) only when the page is asked for, never when Airflow's
    # processes load their plugins.
    from dynamo_lake.airflow.connections import s3_options
    from dynamo_lake.config import load_tables
    from dynamo_lake.errors import DynamoLakeError
    from dynamo_lake.health import TableHealth, table_health

    try:
        configured = load_tables()
    except DynamoLakeError as exc:
        return [], str(exc)
    now = datetime.now(UTC)
    runs, runs_problem = _reconciliation_runs(request)
    found = []
    for config in configured.tables.values():
        try:
            options = s3_options(config.aws_conn_id, config.region)
        except (DynamoLakeError, AirflowNotFoundException) as exc:
            unreadable = TableHealth(config.name, config.dynamodb_table, config.lake_uri)
            unreadable.problems.append(f"connection {config.aws_conn_id!r}: {exc}")
            found.append(unreadable)
            continue
        health = table_health(config, options, now)
        health.judge_freshness(
            runs,
            configured.reconciliation_schedule,
            timedelta(minutes=config.reconcile.settle_margin_minutes),
            now,
        )
        if runs_problem:
            health.problems.append(runs_problem)
        found.append(health)
    return found, ""


def _reconciliation_runs(request: Request) -> tuple[list[Any], str]:
    """The reconciliation DAG's recent runs, read from Airflow's REST API as the person who
    asked for the page (their token: the UI's cookie or the Bearer header), and what stopped
    them being read ("" if nothing did)."""
    import json
    import urllib.error
    import urllib.request

    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
    from airflow.configuration import conf

    from dynamo_lake.health import RunSummary

    token = request.cookies.get(COOKIE_NAME_JWT_TOKEN)
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        token = header[7:]
    base = (conf.get("api", "base_url", fallback="") or "").rstrip("/")
    base = base or f"{request.url.scheme}://{request.url.netloc}"
    url = f"{base}/api/v2/dags/{RECONCILIATION_DAG}/dagRuns?order_by=-run_after&limit=100"
    asked = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(asked, timeout=15) as answer:
            raw = json.loads(answer.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return [], f"reconciliation runs could not be read from Airflow's API ({exc})"
    runs = []
    for run in raw.get("dag_runs", []):
        chosen = (run.get("conf") or {}).get("table")
        moment = run.get("run_after") or run.get("logical_date") or run.get("queued_at")
        if not moment:
            continue
        runs.append(
            RunSummary(
                run_id=str(run["dag_run_id"]),
                state=str(run.get("state")),
                run_after=datetime.fromisoformat(str(moment).replace("Z", "+00:00")),
                table=str(chosen) if chosen else None,
            )
        )
    return runs, ""


@app.get("/api/tables")
def tables(request: Request) -> JSONResponse:
    """Every configured table's health as JSON (what the page shows)."""
    healths, problem = _healths(request)
    if problem:
        return JSONResponse({"error": problem}, status_code=500)
    return JSONResponse([health.to_json() for health in healths])


@app.get("/", response_class=HTMLResponse)
def page(request: Request) -> HTMLResponse:
    return HTMLResponse(render(*_healths(request)))


# Declared last, so it matches only what no route above does. Through the app's
# dependencies an anonymous caller gets 401 for every path, served or not, and learns
# nothing of which paths exist; a logged-in caller gets the 404.
@app.api_route(
    "/{path:path}",
    methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
    include_in_schema=False,
)
def not_found(path: str) -> None:
    raise HTTPException(status_code=404, detail="Not Found")


# --- rendering ----------------------------------------------------------------------------


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _run_link(dag_id: str, run_id: str | None, text: str) -> str:
    if not run_id:
        return _e(text)
    return (
        f'<a href="/dags/{quote(dag_id)}/runs/{quote(run_id, safe="")}" target="_top">'
        f"{_e(text)}</a>"
    )


def _moment(text: str) -> str:
    """An ISO-8601 UTC time as people read it, to the second: ``2024-06-01 12:00:05 UTC``."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _backfill_cell(backfill: dict[str, Any] | None) -> str:
    if not backfill:
        return '<span class="empty">never backfilled: trigger dynamodb_backfill</span>'
    moments = []
    for export in backfill["exports"]:
        if export.get("export_time"):
            moments.append(f"at {_moment(str(export['export_time']))}")
        else:
            moments.append(
                f"[{_moment(str(export.get('export_from')))}, "
                f"{_moment(str(export.get('export_to')))})"
            )
    when = _moment(backfill["committed_at"]) if backfill.get("committed_at") else backfill["run_id"]
    return (
        f"{_run_link(BACKFILL_DAG, backfill['run_id'], when)}"
        f"<br>{_e(backfill['mode'])} export {_e(', '.join(moments))}"
        f"<br>{backfill['rows']:,} rows in {backfill['files']} Parquet files"
    )


def _count(value: object) -> str:
    """A count as people read it (``12,345``), whatever a report holds there."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "?" if value is None else _e(value)


def _verdict_lines(health: Any) -> str:
    """How old the verdict is, and why it cannot be taken as current (amber), linking the
    run that failed after it."""
    lines = []
    if health.verdict_age_seconds is not None:
        lines.append(f'<span class="note">verdict {_age(health.verdict_age_seconds)} old</span>')
    for reason in health.stale:
        lines.append(f'<span class="stale">{_e(reason)}</span>')
    if health.failed_run:
        run_id = health.failed_run["run_id"]
        lines.append(_run_link(RECONCILIATION_DAG, run_id, f"the failed run: {run_id}"))
    return "<br>".join(lines)


def _report_cell(report: dict[str, Any] | None, unreadable: bool = False) -> str:
    if not report and unreadable:
        return (
            '<span class="empty">no readable reconciliation report: see the notes under the '
            "table name</span>"
        )
    if not report:
        return '<span class="empty">never reconciled: trigger dynamodb_reconciliation</span>'
    status = str(report.get("status") or "unknown")
    repair = report.get("repair") or {}
    counts = " ".join(
        f"{kind} {report[kind]}"
        for kind in ("missing", "extra", "different", "phantoms")
        if report.get(kind) is not None
    )
    if counts and status == "repaired":
        counts = f"found before the repair: {counts}"
    as_of = str(report.get("as_of", "?"))
    lines = [
        f'<span class="status {_e(status)}">{_e(status.upper())}</span> '
        f'<span title="T = {_e(as_of)}">'
        f"{_run_link(RECONCILIATION_DAG, report.get('run_id'), 'as of ' + _moment(as_of))}"
        "</span>",
        f"{_e(report.get('method'))}: table {_count(report.get('table_count'))}, "
        f"lake {_count(report.get('lake_count'))}",
    ]
    if counts:
        lines.append(_e(counts))
    tolerance = report.get("tolerance") or {}
    if report.get("method") in ("count", "scan") and tolerance.get("count_bound") is not None:
        lines.append(
            f"within a bound of {_count(tolerance.get('count_bound'))}: "
            f'<span class="note">{_e(tolerance.get("reasoning"))}</span>'
        )
    if repair.get("rows") or status == "repaired":
        recheck = (repair.get("recheck") or {}).get("status")
        lines.append(
            f"repaired: {_count(repair.get('rows'))} rows written, "
            + ("re-check clean" if recheck == "ok" else f"re-check {_e(recheck or '?')}")
        )
    ambiguous = report.get("ambiguous")
    if status == "inconclusive" or (isinstance(ambiguous, int) and ambiguous > 0):
        keys = "some keys" if ambiguous is None else f"{_count(ambiguous)} keys"
        keys = "1 key" if ambiguous == 1 else keys
        lines.append(
            f'<span class="ambiguous">{keys} ambiguous at Athena\'s millisecond precision: '
            "not ruled on</span>"
        )
    findings = report.get("findings")
    if isinstance(findings, dict) and findings.get("uri"):
        lines.append(
            f"findings: {_count(findings.get('rows'))} rows in "
            f'<span class="uri">{_e(findings["uri"])}</span>'
        )
    if report.get("message"):
        lines.append(f'<span class="note">{_e(report["message"])}</span>')
    return "<br>".join(lines)


def _verified_line(verified: dict[str, Any] | None) -> str:
    """The newest verified current-state snapshot: what Athena's FOR VERSION AS OF takes."""
    if not verified:
        return ""
    return (
        f'<br><span class="verified">current state: snapshot {_e(verified.get("snapshot_id"))}'
        f" ({_e(verified.get('tag'))}) equals the table as of "
        f"{_e(_moment(str(verified.get('as_of'))))}, "
        f"{_age(float(verified.get('age_seconds') or 0))} ago</span>"
    )


def _freshness_cell(freshness: dict[str, Any] | None) -> str:
    if not freshness:
        return '<span class="empty">no stream rows yet</span>'
    return (
        f'<span title="{_e(freshness["newest"])}">{_e(_moment(freshness["newest"]))}</span>'
        f"<br>{_age(float(freshness['age_seconds']))} ago"
    )


def cost_table(history: list[Any]) -> str:
    """What each key-by-key check of the last 30 days read: its basis (the current state's
    snapshot and the log since it, or the whole log) and the bytes of the lake and of the
    export, newest first."""
    rows = []
    for point in reversed(history):
        cost = point.cost or {}
        if not cost:
            continue
        basis = cost.get("basis", "log")
        if basis == "current state":
            basis = f"current state at {_moment(str(cost.get('watermark')))}"
        lake = cost.get("lake_bytes")
        scanned = cost.get("athena_bytes_scanned")
        rows.append(
            f"<tr><td>{_e(_moment(point.as_of))}</td><td>{_e(point.method)}</td>"
            f"<td>{_e(basis)}</td><td class='n'>{_mb(lake)}</td>"
            f"<td class='n'>{_mb(cost.get('export_bytes'))}</td><td class='n'>{_mb(scanned)}</td>"
            f"<td class='n'>{'-' if point.seconds is None else f'{point.seconds:,.0f} s'}</td></tr>"
        )
    if not rows:
        return ""
    return (
        '<table class="cost"><thead><tr><th>T</th><th>Method</th><th>Read from</th>'
        "<th>Lake read</th><th>Export</th><th>Athena scanned</th><th>Time</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _mb(value: Any) -> str:
    return "-" if value is None else f"{float(value) / 1e6:,.1f} MB"


def chart(history: list[Any], width: int = 520, height: int = 150) -> str:
    """Table and lake counts over the reports of the last 30 days, drift marked; inline SVG."""
    from dynamo_lake.health import at_a_glance  # the core, only when a page is drawn

    points = [
        point for point in history if point.table_count is not None or point.lake_count is not None
    ]
    if not points:
        return '<p class="empty">no reconciliation with counts in the last 30 days</p>'
    values = [v for p in points for v in (p.table_count, p.lake_count) if v is not None]
    low, high = min(values), max(values)
    pad = max((high - low) * 0.1, 1.0)  # whole items: flat counts still get two ticks
    low, high = max(0.0, low - pad), high + pad
    times = [datetime.fromisoformat(p.as_of.replace("Z", "+00:00")).timestamp() for p in points]
    first, last = min(times), max(times)
    left, right, top, bottom = 70, 10, 10, 24

    def x(moment: float) -> float:
        if last == first:
            return left + (width - left - right) / 2
        return left + (moment - first) / (last - first) * (width - left - right)

    def y(value: float) -> float:
        return top + (high - value) / (high - low) * (height - top - bottom)

    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        'role="img" aria-label="table and lake counts over the last 30 days">',
        f'<line class="axis" x1="{left}" y1="{height - bottom}" x2="{width - right}" '
        f'y2="{height - bottom}"/>',
        f'<text class="tick" x="{left - 6}" y="{y(high) + 8:.1f}" text-anchor="end">'
        f"{high:,.0f}</text>",
        f'<text class="tick" x="{left - 6}" y="{y(low):.1f}" text-anchor="end">{low:,.0f}</text>',
    ]
    for series, attribute in (("table", "table_count"), ("lake", "lake_count")):
        coords = [
            f"{x(moment):.1f},{y(getattr(point, attribute)):.1f}"
            for moment, point in zip(times, points, strict=True)
            if getattr(point, attribute) is not None
        ]
        if coords:
            parts.append(f'<polyline class="{series}" points="{" ".join(coords)}"/>')
    for moment, point in zip(times, points, strict=True):
        # A repaired day is healthy (the lake matched after the repair) but is not an ok
        # day: a green ring. Inconclusive is amber; drift and error are drift.
        css = "repaired" if point.status == "repaired" else at_a_glance(point.status)
        value = point.lake_count if point.lake_count is not None else point.table_count
        parts.append(
            f'<circle class="{css}" cx="{x(moment):.1f}" cy="{y(value or 0):.1f}" r="4">'
            f"<title>{_e(point.as_of)}: {_e(point.status)}, table {_e(point.table_count)}, "
            f"lake {_e(point.lake_count)} ({_e(point.method)})</title></circle>"
        )
    first_label, last_label = (_moment(point.as_of)[:16] for point in (points[0], points[-1]))
    parts.append(
        f'<text class="tick" x="{left}" y="{height - 6}">{_e(first_label)}</text>'
        f'<text class="tick" x="{width - right}" y="{height - 6}" text-anchor="end">'
        f"{_e(last_label)} UTC</text></svg>"
    )
    return "".join(parts)


_STYLE = """
:root { color-scheme: light; --bg: #ffffff; --fg: #1a202c; --muted: #718096; --line: #e2e8f0;
  --card: #f7fafc; --ok: #38a169; --amber: #b7791f; --drift: #e53e3e; --table: #3182ce;
  --lake: #805ad5; }
:root.dark { color-scheme: dark; --bg: #09090b; --fg: #e4e4e7; --muted: #a1a1aa;
  --line: #27272a; --card: #18181b; --ok: #48bb78; --amber: #ecc94b; --drift: #fc8181;
  --table: #63b3ed; --lake: #b794f4; }
html, body { background: transparent; }  /* the UI's own background shows: no frame */
body { margin: 0; padding: 16px 20px; color: var(--fg);
  font: 14px/1.45 Inter, system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
h1 { font-size: 20px; margin: 0 0 4px; } .sub { color: var(--muted); margin: 0 0 16px; }
table { border-collapse: collapse; width: 100%; } th, td { text-align: left;
  vertical-align: top; padding: 10px 12px; border-bottom: 1px solid var(--line); }
th { color: var(--muted); font-weight: 600; font-size: 12px; text-transform: uppercase; }
a { color: var(--table); text-decoration: none; } a:hover { text-decoration: underline; }
.status { font-weight: 700; padding: 1px 8px; border-radius: 10px; font-size: 12px; }
.status.ok, .status.repaired { background: color-mix(in srgb, var(--ok) 18%, transparent);
  color: var(--ok); } .status.repaired { box-shadow: inset 0 0 0 1px var(--ok); }
.status.inconclusive { background: color-mix(in srgb, var(--amber) 18%, transparent);
  color: var(--amber); }
.status.drift, .status.error { background: color-mix(in srgb, var(--drift) 18%, transparent);
  color: var(--drift); }
.glance { width: 12px; height: 12px; border-radius: 50%; display: inline-block;
  background: var(--muted); } .glance.ok { background: var(--ok); }
.glance.drift { background: var(--drift); } .glance.inconclusive { background: var(--amber); }
.glance.stale { background: var(--amber); } .stale { color: var(--amber); }
td:first-child { white-space: nowrap; }
.ambiguous { color: var(--amber); } .uri { font-family: ui-monospace, monospace;
  font-size: 12px; word-break: break-all; }
.empty, .note { color: var(--muted); font-style: italic; }
.chart { background: var(--card); border-radius: 6px; }
table.cost { width: auto; margin: 8px 0 16px; font-size: 12px; } table.cost td, table.cost th {
  padding: 4px 10px; } table.cost td.n { text-align: right; white-space: nowrap; }
.chart .axis { stroke: var(--line); } .chart .tick { fill: var(--muted); font-size: 11px; }
.chart polyline { fill: none; stroke-width: 2; } .chart .table { stroke: var(--table); }
.chart .lake { stroke: var(--lake); stroke-dasharray: 5 3; }
.chart circle.ok { fill: var(--ok); } .chart circle.drift { fill: var(--drift); }
.chart circle.repaired { fill: var(--card); stroke: var(--ok); stroke-width: 2; }
.chart circle.inconclusive { fill: var(--amber); } .chart circle.unknown { fill: var(--muted); }
.chart-title { font-size: 15px; margin: 22px 0 6px; }
.legend span { margin-right: 14px; color: var(--muted); font-size: 12px; }
.legend .t { color: var(--table); } .legend .l { color: var(--lake); }
.legend .o, .legend .r { color: var(--ok); } .legend .i { color: var(--amber); }
.legend .d { color: var(--drift); }
"""

# The Airflow UI (next-themes) puts "dark" or "light" on its <html>; this page sits in its
# iframe, on the same origin, so it follows it, and the browser's preference otherwise.
_THEME = """
<script>
(function () {
  function apply() {
    var dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
    try {
      var outer = window.parent.document.documentElement.classList;
      if (outer.contains("dark")) dark = true; else if (outer.contains("light")) dark = false;
    } catch (e) {}
    document.documentElement.classList.toggle("dark", dark);
  }
  apply();
  try {
    new MutationObserver(apply).observe(window.parent.document.documentElement,
      {attributes: true, attributeFilter: ["class"]});
  } catch (e) {}
})();
</script>
"""


def render(healths: list[Any], problem: str = "") -> str:
    """The page: a table of every configured table, then each one's chart (or what stopped
    the tables file being read)."""
    rows = []
    charts = []
    for health in healths:
        report = health.report
        glance = health.glance
        title = report.get("status", "?") if report else "never reconciled"
        if health.stale:
            title = f"{title}; " + "; ".join(health.stale)
        problems = "".join(f'<br><span class="note">{_e(p)}</span>' for p in health.problems)
        unreadable = any(p.startswith("reconciliation reports:") for p in health.problems)
        rows.append(
            f'<tr data-table="{_e(health.table)}"><td><span class="glance {glance}" '
            f'title="{_e(title)}"></span> <b>{_e(health.table)}</b><br>'
            f'<span class="note">{_e(health.dynamodb_table)}</span>{problems}</td>'
            f"<td>{_backfill_cell(health.backfill)}</td><td>{_report_cell(report, unreadable)}"
            f"{'<br>' if _verdict_lines(health) else ''}{_verdict_lines(health)}"
            f"{_verified_line(health.verified_state)}</td>"
            f"<td>{_freshness_cell(health.freshness)}</td></tr>"
        )
        charts.append(
            f'<h2 class="chart-title">{_e(health.table)}: the last 30 days</h2>'
            f"{chart(health.history)}{cost_table(health.history)}"
        )
    legend = (
        '<p class="legend"><span class="t">&#9644; table count</span>'
        '<span class="l">&#9644; lake count</span><span class="o">&#9679; ok</span>'
        '<span class="r">&#9675; repaired</span>'
        '<span class="i">&#9679; inconclusive, or overtaken (old, or a later run failed)</span>'
        '<span class="d">&#9679; drift or error</span></p>'
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Lake health</title>"
        f"<style>{_STYLE}</style>{_THEME}</head><body>"
        "<h1>Lake health</h1><p class='sub'>Each configured DynamoDB table and its lake: the "
        "last backfill, the last reconciliation, and how fresh the stream is.</p>"
        + (f'<p class="status error">{_e(problem)}</p>' if problem else "")
        + (
            ""
            if healths or problem
            else '<p class="empty">no table is configured: add one to the tables file</p>'
        )
        + "<table><thead><tr><th>Table</th><th>Last backfill</th><th>Last reconciliation</th>"
        f"<th>Newest stream row</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        f"{legend}{''.join(charts)}</body></html>"
    )


class LakeHealthPlugin(AirflowPlugin):
    name = "lake_health"
    fastapi_apps: ClassVar[list[dict[str, Any]]] = [
        {"app": app, "url_prefix": "/lake-health", "name": "Lake health"}
    ]
    # "Lakes": a nav label the sidebar shows whole. The UI mirrors the page's own path after
    # the view's route, so the address reads /plugin/lakes/lake-health/.
    external_views: ClassVar[list[dict[str, Any]]] = [
        {
            "name": "Lakes",
            "href": "/lake-health/",
            "url_route": "lakes",
            "nav_top_level": True,
        }
    ]
