"""The style shared by the HTML pages hydra-vertex writes and serves (``report.html``, the
emulator's console), and the Content-Security-Policy that allows that style and nothing else.

Standard library only: the report (client side) and the console (the emulator) both use it.
"""

from __future__ import annotations

import base64
import hashlib

STYLE = """
:root { --fg: #1d2330; --muted: #5b6472; --line: #d8dde5; --bg: #ffffff; --panel: #f6f8fb;
  --ok: #1a7f37; --bad: #c62828; --run: #9a6700; --accent: #d62728; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
  background: var(--bg); margin: 0; padding: 24px 32px; max-width: 1280px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.muted, .meta { color: var(--muted); }
.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 12px 0; }
.meta dt { font-weight: 600; color: var(--fg); } .meta dd { margin: 0; overflow-wrap: anywhere; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px;
  font-weight: 600; color: #fff; background: var(--muted); vertical-align: middle; }
.badge.succeeded, .badge.SUCCEEDED { background: var(--ok); }
.badge.failed, .badge.INFEASIBLE, .badge.FAILED, .badge.CANCELLED { background: var(--bad); }
.badge.running, .badge.ACTIVE, .badge.RUNNING, .badge.REQUESTED, .badge.PENDING,
.badge.QUEUED, .badge.STOPPING { background: var(--run); }
.stopped { font-size: 12px; color: var(--muted); margin-left: 6px; white-space: nowrap; }
.error { border-left: 4px solid var(--bad); background: #fdecea; padding: 8px 12px;
  white-space: pre-wrap; font-family: ui-monospace, monospace; font-size: 13px; }
.best { border: 1px solid var(--line); background: var(--panel); padding: 12px 16px;
  border-radius: 6px; }
pre.paste { background: #0f1720; color: #e6edf3; padding: 10px 14px; border-radius: 6px;
  overflow-x: auto; white-space: pre-wrap; overflow-wrap: anywhere; user-select: all; }
figure { margin: 0 0 12px; } figcaption { color: var(--muted); font-size: 12px; }
.slices { display: flex; flex-wrap: wrap; gap: 12px; }
.chart-svg { max-width: 100%; height: auto; background: var(--bg); }
.plot-bg { fill: var(--panel); } .grid { stroke: var(--line); stroke-width: 1; }
.tick { font-size: 11px; fill: var(--muted); } .axis-label { font-size: 12px; fill: var(--fg); }
.pt { stroke: #fff; stroke-width: 1; } .pt[data-best] { stroke: var(--accent); stroke-width: 2.5; }
.pt-failed { stroke: var(--bad); stroke-width: 2; fill: none; }
.best-line { stroke: var(--accent); stroke-width: 2; fill: none; }
.pc-line { fill: none; stroke-width: 1.5; stroke-opacity: 0.75; }
.pc-line.best { stroke-width: 3.5; stroke-opacity: 1; }
.pc-axis { stroke: var(--fg); stroke-width: 1; }
.pc-tick { font-size: 10px; paint-order: stroke; stroke: #fff; stroke-width: 3px; fill: var(--fg); }
.bar { fill: #3b528b; }
.pt-clipped { fill: var(--muted); stroke: #fff; stroke-width: 1; }
.na-rule { stroke: var(--muted); stroke-width: 1; stroke-dasharray: 2 2; }
.pc-tick.na { font-style: italic; fill: var(--muted); }
.curve { fill: none; stroke-width: 1.5; stroke-opacity: 0.8; stroke-linecap: round; }
.curve.best { stroke-width: 3; stroke-opacity: 1; }
.stop-mark { stroke: var(--bad); stroke-width: 2; fill: none; }
.tl-bar { fill: #8a93a0; } .tl-bar.SUCCEEDED { fill: #5ec962; }
.tl-bar.INFEASIBLE { fill: #e57373; }
.tl-bar.running { fill: #f2c14e; } .tl-bar.best { stroke: var(--accent); stroke-width: 2.5; }
.tl-label { font-size: 11px; fill: #1d2330; }
.badge.stopped { background: #6a51a3; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 8px; text-align: left;
  vertical-align: top; }
th { background: var(--panel); position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.best-row td { background: #fff4e5; font-weight: 600; }
td.params { font-family: ui-monospace, monospace; font-size: 12px; overflow-wrap: anywhere; }
td.reason { color: var(--bad); white-space: pre-wrap; font-size: 12px; }
footer { margin-top: 32px; color: var(--muted); font-size: 12px; }
"""


def csp(style: str = STYLE) -> str:
    """A Content-Security-Policy that allows only ``style`` (by hash) and nothing else."""
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    return (
        f"default-src 'none'; style-src 'sha256-{digest}'; img-src data:; "
        "base-uri 'none'; form-action 'none'"
    )
