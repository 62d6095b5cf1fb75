"""The ``hydra-vertex`` command: small subcommands, one usage-error type, tracebacks with --debug.

Each subcommand lives in its own module with ``register(subparsers)``; heavy imports happen inside
the command functions so that ``--help`` is fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from hydra_vertex import __version__
from hydra_vertex.errors import HydraVertexError, UsageError

_COMMAND_MODULES = ("emulator", "pipeline", "lifecycle", "report", "images")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hydra-vertex",
        description="Tune Hydra apps with Vertex AI hyperparameter tuning (or a local emulator), "
        "then retrain with the winner.",
    )
    parser.add_argument("--version", action="version", version=f"hydra-vertex {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    import importlib

    for name in _COMMAND_MODULES:
        module = importlib.import_module(f"hydra_vertex.cli._{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except UsageError as e:
        if args.debug:
            raise
        print(f"hydra-vertex {args.command}: error: {e}", file=sys.stderr)
        return 2
    except HydraVertexError as e:
        if args.debug:
            raise
        print(f"hydra-vertex {args.command}: error: {e}", file=sys.stderr)
        return 1
    except Exception as e:
        message = cloud_error(e)
        if message is None or args.debug:
            raise
        print(f"hydra-vertex {args.command}: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"hydra-vertex {args.command}: interrupted", file=sys.stderr)
        return 130


def cloud_error(error: BaseException) -> str | None:
    """A one-paragraph message for the Google client errors a user can act on, else None."""
    module = type(error).__module__
    if module.startswith("google.auth"):
        return (
            f"{error}\nNo usable Google Cloud credentials: run 'gcloud auth application-default "
            "login', or set HYDRA_VERTEX_EMULATOR (and _TOKEN) to use the local emulator."
        )
    if module.startswith("google.api_core"):
        code = getattr(error, "code", None)
        return (
            f"Google Cloud answered {code}: {getattr(error, 'message', error)} (check the project, "
            "region and permissions in the job file's 'vertex' section; see docs/vertex.md)"
        )
    return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
