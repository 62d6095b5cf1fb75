"""`hydra-vertex emulator`: run the local Vertex AI emulator in the foreground."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Any

from hydra_vertex.errors import UsageError


def register(sub: Any) -> None:
    p = sub.add_parser(
        "emulator",
        help="run the local Vertex AI emulator in the foreground (jobs, pipeline runs, "
        "schedules, Cloud Storage, Cloud Build, template registry, console)",
        description="Serve the Vertex AI v1 subset hydra-vertex uses, over REST and gRPC (TLS). "
        "Writes STATE_DIR/endpoint.json (endpoint, token, console_token, grpc_endpoint, "
        "grpc_ca, grpc_roots; mode 0600).",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    p.add_argument("--port", type=_port, default=0, help="port (default: a free one)")
    p.add_argument(
        "--grpc-port",
        type=_port,
        default=0,
        help="port of the gRPC (TLS) endpoint, the SDK's default transport (default: a free one)",
    )
    p.add_argument("--no-grpc", action="store_true", help="serve REST only")
    p.add_argument("--state-dir", default=".hydra-vertex/emulator", help="durable state directory")
    p.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="run image NAME from local directory DIR (repeatable)",
    )
    p.add_argument("--seed", type=int, default=None, help="seed for trial suggestions")
    p.add_argument(
        "--gpus",
        default=None,
        metavar="LIST",
        help="the GPUs trials share, comma-separated (0,1,2,3; '' for none); default "
        "HYDRA_VERTEX_GPUS, then CUDA_VISIBLE_DEVICES, then nvidia-smi -L",
    )
    p.add_argument(
        "--quiet", "-q", action="store_true", help="no progress of running tuning jobs"
    )
    p.add_argument(
        "--console-actions",
        action="store_true",
        help="let every console visitor (the console token) cancel jobs (by default only a "
        "visitor signed in with the API token can)",
    )
    p.set_defaults(func=_run)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535 (0: a free one), got {port}")
    return port


def _parse_images(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, directory = item.partition("=")
        if not sep or not name or not directory:
            raise UsageError(f"--image {item!r} must be NAME=DIR")
        if not os.path.isdir(directory):
            raise UsageError(f"--image {item!r}: {directory!r} is not a directory")
        out[name] = directory
    return out


def _run(args: argparse.Namespace) -> int:
    from hydra_vertex.emulator import start

    images = _parse_images(args.image)
    handle = start(
        args.state_dir,
        port=args.port,
        host=args.host,
        images=images,
        seed=args.seed,
        gpus=args.gpus,
        grpc_port=None if args.no_grpc else args.grpc_port,
        console_actions=args.console_actions,
    )
    grpc = f"; gRPC (TLS) on {handle.grpc_endpoint}" if handle.grpc_endpoint else ""
    from hydra_vertex.local_details import emulator_devices

    pool = emulator_devices(handle.endpoint, handle.token)
    gpus = ",".join(pool.get("devices") or []) or "none"
    print(
        f"hydra-vertex emulator listening on {handle.endpoint}{grpc} "
        f"(state: {args.state_dir}; API token in endpoint.json)\n"
        f"GPUs: {gpus} (from {pool.get('source', '?')})\n"
        f"console (read-only; the link carries the console token, not the API token; "
        f"'hydra-vertex open' prints it again): {handle.console_url}",
        flush=True,
    )
    done = threading.Event()

    def stop(signum: int, frame: object) -> None:
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    from hydra_vertex.progress import emulator_details, emulator_jobs, emulator_progress

    mode = "quiet" if args.quiet else "auto"
    with emulator_progress(
        emulator_jobs(handle.endpoint, handle.token),
        sys.stdout,
        mode=mode,
        details=emulator_details(handle.endpoint, handle.token),
    ):
        done.wait()
    handle.stop()
    return 0
