"""`hydra-vertex report (JOB_RESOURCE_NAME | SUMMARY.json) -o report.html`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        help="write a self-contained HTML report (charts, trials, winning overrides)",
        description="Write one self-contained HTML file for a tuning run: optimization history, "
        "parallel coordinates, parameter importance, slice plots, the trials table and the winning "
        "overrides. SOURCE is a SUMMARY.json written by 'hydra-vertex run', or a tuning job's "
        "resource name (projects/P/locations/L/hyperparameterTuningJobs/ID), read through the "
        "aiplatform client: from Vertex AI, or from the emulator when HYDRA_VERTEX_EMULATOR is "
        "set.",
    )
    p.add_argument("source", metavar="JOB_RESOURCE_NAME|SUMMARY.json")
    p.add_argument("-o", "--output", default="report.html", metavar="FILE")
    p.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    from hydra_vertex.report import load_summary, summary_from_job, wandb_links, write_report

    source = str(args.source)
    links: dict[str, str] = {}
    if source.startswith("projects/"):
        summary = summary_from_job(source)
    else:
        summary = load_summary(source)
        try:
            links = wandb_links(json.loads(Path(source).read_text()))
        except (OSError, ValueError, AttributeError):
            links = {}
    path = write_report(summary, args.output, wandb_runs=links)
    print(f"wrote {path}")
    return 0
