"""`hydra-vertex images [--prune [--keep N]] [--format json]`: the local image cache."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from hydra_vertex.errors import UsageError

DEFAULT_KEEP = 3


def register(sub: Any) -> None:
    p = sub.add_parser(
        "images",
        help="list the local images (size, age, last use); --prune removes old ones",
        description="List the local images that 'hydra-vertex run --local' built (in "
        "$HYDRA_VERTEX_IMAGES, else ~/.cache/hydra-vertex/images), most recently used first. "
        "With --prune, remove all but the --keep most recently used, and the Python "
        "environments no remaining image uses.",
    )
    p.add_argument("--prune", action="store_true", help="remove old images")
    p.add_argument(
        "--keep",
        type=_count,
        default=None,
        metavar="N",
        help=f"with --prune: how many of the most recently used to keep (default {DEFAULT_KEEP})",
    )
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=_images)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"--keep must be a whole number >= 0, got {text!r}")
    return value


def human_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"  # pragma: no cover


def human_age(seconds: float) -> str:
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= length:
            return f"{seconds / length:.0f}{unit} ago"
    return "just now"


def _images(args: argparse.Namespace) -> int:
    from hydra_vertex import images

    if args.keep is not None and not args.prune:
        raise UsageError("--keep goes with --prune")
    now = time.time()
    if args.prune:
        removed = images.prune(DEFAULT_KEEP if args.keep is None else args.keep)
        if args.format == "json":
            print(json.dumps({"removed": [i.ref for i in removed]}, indent=2))
        else:
            freed = sum(i.size for i in removed)
            for image in removed:
                print(f"removed {image.ref} ({human_size(image.size)})")
            print(f"removed {len(removed)} image(s), {human_size(freed)} freed")
        return 0
    found = images.list_images()
    if args.format == "json":
        print(
            json.dumps(
                [
                    {
                        "ref": i.ref,
                        "path": str(i.path),
                        "size": i.size,
                        "created": i.created,
                        "last_used": i.last_used,
                        "environment": i.environment,
                    }
                    for i in found
                ],
                indent=2,
            )
        )
        return 0
    if not found:
        print(f"no local images in {images.images_root()}")
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"local images in {images.images_root()}")
    for column in ("image", "python", "size", "age", "last use"):
        table.add_column(column, overflow="fold")
    for i in found:
        env = i.environment
        python = env.get("python") or "hydra-vertex's own"
        table.add_row(
            i.ref, python, human_size(i.size), human_age(now - i.created),
            human_age(now - i.last_used),
        )
    Console(highlight=False).print(table)
    return 0
