"""The report as one self-contained HTML page: KPI cards with their marks, the latency
chart as inline SVG, alerts by severity and the failing channels. No external assets,
so the file can be mailed or archived and still read the same.
"""

from __future__ import annotations

from jinja2 import Environment
from markupsafe import Markup

from notifier.report.chart import latency_chart
from notifier.report.format import (
    DEFINITIONS,
    format_period,
    format_target,
    format_value,
    incident_lines,
    kpi_note,
    log_summary,
    no_failures,
)
from notifier.report.model import Report

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>notifier report · {{ period }}</title>
<style>
  :root { --ink: #0f172a; --muted: #64748b; --line: #e2e8f0; --card: #ffffff; }
  * { box-sizing: border-box; }
  body { margin: 0; background: #f1f5f9; color: var(--ink);
         font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
  main { max-width: 980px; margin: 0 auto; padding: 32px 20px 48px; }
  header h1 { margin: 0; font-size: 24px; }
  header p { margin: 4px 0 0; color: var(--muted); }
  section { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
            padding: 18px 20px; margin-top: 20px; }
  h2 { margin: 0 0 12px; font-size: 16px; }
  .cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr));
           gap: 12px; margin-top: 24px; }
  .card { background: var(--card); border: 1px solid var(--line); border-top: 4px solid;
          border-radius: 10px; padding: 14px 16px; }
  .card .name { color: var(--muted); font-size: 13px; }
  .card .name { display: flex; justify-content: space-between; gap: 8px; }
  .card .value { font-size: 26px; font-weight: 600; margin: 2px 0; white-space: nowrap; }
  .card.no_data .value { font-size: 20px; color: var(--muted); }
  .card .target { font-size: 13px; color: var(--muted); }
  .card .note { font-size: 12px; color: var(--muted); margin-top: 4px; }
  .met { border-top-color: #16a34a; } .near { border-top-color: #f59e0b; }
  .missed { border-top-color: #dc2626; } .no_data { border-top-color: #94a3b8; }
  table { width: 100%; border-collapse: collapse; font-size: 14px; }
  th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line);
           vertical-align: top; }
  th { color: var(--muted); font-weight: 500; }
  .num { text-align: right; font-variant-numeric: tabular-nums; }
  table.narrow { max-width: 420px; }
  .sev { display: inline-block; padding: 0 8px; border-radius: 999px; font-size: 12px;
         background: #e2e8f0; }
  .sev-critical { background: #fee2e2; color: #991b1b; }
  .sev-warning { background: #fef3c7; color: #92400e; }
  .sev-info { background: #dbeafe; color: #1e40af; }
  .error { color: var(--muted); font-size: 12px; word-break: break-word; }
  .ok { color: #16a34a; }
  dl { margin: 0; font-size: 13px; color: var(--muted); }
  dt { font-weight: 600; color: var(--ink); float: left; margin-right: 6px; }
  dd { margin: 0 0 6px; }
</style>
</head>
<body>
<main>
<header>
  <h1>notifier report</h1>
  <p>{{ period }} · {{ log_summary }}</p>
</header>
<div class="cards">
{% for card in cards %}
  <div class="card {{ card.css }}">
    <div class="name">
      <span>{{ card.name }}</span><span title="{{ card.status }}">{{ card.mark }}</span>
    </div>
    <div class="value">{{ card.value }}</div>
    <div class="target">target {{ card.target }}</div>
    {% if card.note %}<div class="note">{{ card.note }}</div>{% endif %}
  </div>
{% endfor %}
</div>
<section>
  <h2>P95 delivery time over the period</h2>
  {{ chart }}
</section>
<section>
  <h2>Alerts by severity</h2>
  <table class="narrow">
    <tr><th>Severity</th><th class="num">Alerts</th><th class="num">Notifications</th></tr>
    {% for s in report.severities %}
    <tr><td><span class="sev sev-{{ s.severity }}">{{ s.severity }}</span></td>
        <td class="num">{{ s.alerts }}</td><td class="num">{{ s.notifications }}</td></tr>
    {% endfor %}
  </table>
</section>
<section>
  <h2>Top failing channels</h2>
  {% if report.failing_channels %}
  <table>
    <tr><th>Channel</th><th class="num">Failed</th><th class="num">Dead</th><th>Reasons</th></tr>
    {% for c in report.failing_channels %}
    <tr><td>{{ c.channel }} <span class="error">({{ c.channel_type }})</span></td>
        <td class="num">{{ c.failed }} / {{ c.attempts }}</td><td class="num">{{ c.dead }}</td>
        <td>{{ c.reasons | map("join", " ×") | join(", ") }}
            <div class="error">last error: {{ c.last_error }}</div></td></tr>
    {% endfor %}
  </table>
  {% else %}
  <p class="ok">{{ no_failures }}</p>
  {% endif %}
</section>
{% if incidents %}
<section>
  <h2>Incidents</h2>
  <ul>{% for line in incidents %}<li>{{ line }}</li>{% endfor %}</ul>
</section>
{% endif %}
<section>
  <h2>How these are measured</h2>
  <dl>
  {% for term, meaning in definitions %}<dt>{{ term }}</dt><dd>{{ meaning }}</dd>{% endfor %}
  </dl>
</section>
</main>
</body>
</html>
"""

_TEMPLATE = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True).from_string(_PAGE)


def render_html(report: Report) -> str:
    delivery_p95 = report.targets.delivery_p95_seconds
    return _TEMPLATE.render(
        report=report,
        period=format_period(report.since, report.now),
        log_summary=log_summary(report),
        cards=[
            {
                "name": kpi.name,
                "value": format_value(kpi),
                "target": format_target(kpi),
                "mark": kpi.status.mark,
                "css": kpi.status.name.lower(),
                "status": kpi.status.name.lower().replace("_", " "),
                "note": kpi_note(report, kpi),
            }
            for kpi in report.kpis
        ],
        chart=Markup(latency_chart(report.latency, delivery_p95)),  # markup we built, text escaped
        definitions=DEFINITIONS,
        incidents=incident_lines(report.incidents) if report.incidents is not None else [],
        no_failures=no_failures(report),
    )
