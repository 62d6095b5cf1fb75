"""`hydra-vertex run | compile | submit | schedule | build-components-image`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from hydra_vertex.errors import HydraVertexError, UsageError


def register(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run build -> tune -> best trial -> retrain on this machine",
        description="Run the whole flow for JOB.yaml on this machine, through the local emulator "
        "(started here unless one is running). Without --local this is refused only when a "
        "Vertex AI project is configured (GOOGLE_CLOUD_PROJECT, ...): then say --local, or use "
        "'hydra-vertex submit JOB.yaml --wait' for Vertex AI.",
    )
    p.add_argument("job", metavar="JOB.yaml", help="the job file (see docs/job-file.md)")
    p.add_argument(
        "--local",
        action="store_true",
        help="run on this machine (the default when no Vertex AI project is configured)",
    )
    p.add_argument("--output", "-o", metavar="SUMMARY.json", help="write the run's summary here")
    p.add_argument(
        "--state-dir",
        default=None,
        help="the emulator's state directory (default: .hydra-vertex/emulator)",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress, only errors")
    p.set_defaults(func=_run)

    p = sub.add_parser("compile", help="write the generic compiled pipeline (JSON)")
    p.add_argument("-o", "--output", default="tune_and_retrain.json", metavar="FILE")
    p.add_argument(
        "--components-image",
        metavar="IMAGE",
        help="the image the components run in on Vertex (default: the documented one)",
    )
    p.set_defaults(func=_compile)

    for name, helptext in (
        ("submit", "start a Vertex AI Pipelines run for JOB.yaml"),
        ("schedule", "run JOB.yaml's pipeline on a cron schedule"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("job", metavar="JOB.yaml")
        p.add_argument(
            "--components-image",
            metavar="IMAGE",
            help="compile the template for this components image first",
        )
        p.add_argument(
            "--template",
            metavar="PATH_OR_URL",
            help="run this compiled pipeline instead of the packaged template: a file, gs:// URI, "
            "Artifact Registry URL or the emulator's registry URL",
        )
        if name == "submit":
            p.add_argument("--wait", action="store_true", help="wait until the run ends")
            p.set_defaults(func=_submit)
        else:
            p.add_argument(
                "--cron",
                required=True,
                metavar="EXPR",
                help="five-field cron expression, optionally 'TZ=Zone/Name ...'",
            )
            p.add_argument("--max-runs", type=int, default=None, help="stop after N runs")
            p.add_argument("--max-concurrent", type=int, default=1, help="runs at once (default 1)")
            p.set_defaults(func=_schedule)

    p = sub.add_parser(
        "build-components-image", help="build and push the components' image with Cloud Build"
    )
    p.add_argument("--project", required=True)
    p.add_argument("--region", required=True)
    p.add_argument("--staging-bucket", required=True, metavar="gs://BUCKET")
    p.add_argument("--repository", default="hydra-vertex", help="Artifact Registry repository")
    p.set_defaults(func=_build_components_image)


def _run(args: argparse.Namespace) -> int:
    from hydra_vertex.local_run import model_warning, print_summary, run_local

    if not args.local:
        from hydra_vertex.vertex import configured_project, resolve_endpoint

        configured = configured_project()
        if configured is not None and not resolve_endpoint().is_emulator:
            raise UsageError(
                f"a Vertex AI project is configured ({configured[1]}={configured[0]}); "
                "'hydra-vertex run' runs on this machine: say so with --local, or run on Vertex "
                f"AI with 'hydra-vertex submit {args.job} --wait'"
            )
    summary = run_local(
        args.job,
        output=args.output,
        state_dir=args.state_dir,
        progress="quiet" if args.quiet else "auto",
    )
    if not args.quiet:
        print_summary(summary, sys.stdout)
        if args.output:
            print(f"summary: {args.output}")
    elif summary.model_dir_empty:
        print(model_warning(summary), file=sys.stderr)
    if summary.status != "succeeded":
        raise HydraVertexError(f"the run failed: {summary.error}")
    return 0


def _compile(args: argparse.Namespace) -> int:
    from hydra_vertex.api import compile

    path = compile(args.output, args.components_image)
    print(f"wrote {path}")
    return 0


def _submit(args: argparse.Namespace) -> int:
    from hydra_vertex.api import submit
    from hydra_vertex.vertex import resolve_endpoint

    with _quiet_sdk(resolve_endpoint().is_emulator):
        job = submit(
            args.job, components_image=args.components_image, template=args.template,
            wait=args.wait,
        )
    print(f"console: {_console_url(job.gca_resource)}")
    print(job.resource_name)
    return 0


def _quiet_sdk(quiet: bool) -> Any:
    """Against the emulator, the aiplatform SDK's progress lines (and their links to Google's
    console, which knows nothing of a local run) are left out; warnings and errors stay."""
    import contextlib
    import logging

    @contextlib.contextmanager
    def quiet_logs() -> Any:
        # The SDK's module loggers set their own level and handler (INFO, to stdout): only
        # logging.disable reaches them all.
        logging.disable(logging.INFO)
        try:
            yield
        finally:
            logging.disable(logging.NOTSET)

    return quiet_logs() if quiet else contextlib.nullcontext()


def _console_url(resource: Any) -> str:
    """The run's page: the emulator's console, or Google Cloud console's."""
    from hydra_vertex.jobref import PIPELINE, Found, Target
    from hydra_vertex.lifecycle import console_url
    from hydra_vertex.vertex import resolve_endpoint

    endpoint = resolve_endpoint()
    target = Target(endpoint, "-", "-")  # console_url asks the emulator for its console token
    return console_url(target, Found(PIPELINE, resource))


def _schedule(args: argparse.Namespace) -> int:
    from hydra_vertex.api import check_cron, schedule
    from hydra_vertex.vertex import resolve_endpoint

    check_cron(args.cron)  # before any upload
    with _quiet_sdk(resolve_endpoint().is_emulator):
        sched = schedule(
            args.job,
            args.cron,
            components_image=args.components_image,
            template=args.template,
            max_run_count=args.max_runs,
            max_concurrent_run_count=args.max_concurrent,
        )
    print(sched.resource_name)
    return 0


def _build_components_image(args: argparse.Namespace) -> int:
    from hydra_vertex.cloud_build import build_components_image

    print(
        build_components_image(
            args.project, args.region, args.staging_bucket, repository=args.repository
        )
    )
    return 0
