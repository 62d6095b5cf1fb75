"""What a Dockerfile says about how its image starts: ``WORKDIR``, ``ENV``, ``ENTRYPOINT``, ``CMD``.

A local image (:mod:`hydra_vertex.images`) is a directory, not a container: nothing of the
Dockerfile is executed (no ``FROM`` image is pulled, no ``RUN`` step runs). What the emulator
needs is how a container of it would start, with Vertex's rules on top (``command`` replaces
``ENTRYPOINT``, ``args`` replace ``CMD``, trial arguments come last). :func:`parse` reads that with
Docker's semantics:

- lines: ``dockerfile-parse`` (continuations, comments, parser directives);
- stages: the last ``FROM`` is the image; a stage ``FROM`` an earlier stage inherits its settings,
  a stage from any other image starts empty (a base image's own settings are unknown locally);
- ``ENTRYPOINT``/``CMD``: a JSON array of strings is the exec form; anything else is the shell
  form, ``SHELL`` (default ``/bin/sh -c``) plus the text. ``ENTRYPOINT`` resets a ``CMD`` inherited
  from the parent stage (not one set earlier in the same stage), as Docker does;
- ``ENV``/``WORKDIR``/``COPY``: ``$VAR``, ``${VAR}``, ``${VAR:-word}``, ``${VAR:+word}`` from the
  stage's ``ARG`` defaults and ``ENV``; a variable unknown here (``$PATH``) stays as written and is
  expanded when a process starts (:func:`expand`), against its environment;
- ``COPY``/``ADD`` of ``.`` (the build context) tells where the snapshot sits in the container
  (``context``); without one the context is taken to be the final ``WORKDIR``
  (``WORKDIR /`` + ``COPY trainer /trainer``, as Google's samples do, then lines up too).

:meth:`ContainerConfig.localized` maps container paths (the working directory, the entrypoint's
and command's arguments, variable values) under ``context`` to the snapshot directory.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hydra_vertex.errors import HydraVertexError

__all__ = ["ContainerConfig", "DockerfileError", "expand", "parse", "parse_file"]

DEFAULT_SHELL = ("/bin/sh", "-c")
_ESCAPED_DOLLAR = "\x00"
_VARIABLE = re.compile(
    r"\$(?:(?P<bare>[A-Za-z_][A-Za-z0-9_]*)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"(?:(?P<op>:[-+])(?P<word>[^}]*))?\})"
)


class DockerfileError(HydraVertexError):
    """A Dockerfile this module cannot read (the message names the file and line)."""


@dataclass(frozen=True)
class ContainerConfig:
    """How a container of the image starts. ``entrypoint``/``cmd`` are None when not set."""

    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    workdir: str = "/"
    env: tuple[tuple[str, str], ...] = ()
    context: str = "/"

    def to_json(self) -> dict[str, Any]:
        return {
            "entrypoint": list(self.entrypoint) if self.entrypoint is not None else None,
            "cmd": list(self.cmd) if self.cmd is not None else None,
            "workdir": self.workdir,
            "env": [list(kv) for kv in self.env],
            "context": self.context,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ContainerConfig:
        def argv(value: Any) -> tuple[str, ...] | None:
            return None if value is None else tuple(str(v) for v in value)

        return cls(
            entrypoint=argv(data.get("entrypoint")),
            cmd=argv(data.get("cmd")),
            workdir=str(data.get("workdir") or "/"),
            env=tuple((str(k), str(v)) for k, v in data.get("env") or ()),
            context=str(data.get("context") or "/"),
        )

    def localized(self, root: Path) -> ContainerConfig:
        """The same settings with container paths under ``context`` that exist in ``root`` (the
        snapshot) turned into paths in ``root``; ``workdir`` always becomes a local directory
        (``root`` itself when the container's working directory is outside the context)."""
        local = _PathMap(self.context, root)
        workdir = local.path(self.workdir, must_exist=False) or str(root)

        def argv(values: tuple[str, ...] | None) -> tuple[str, ...] | None:
            return None if values is None else tuple(local.path(v) or v for v in values)

        env = tuple(
            (k, ":".join(local.path(part) or part for part in v.split(":"))) for k, v in self.env
        )
        return replace(
            self, entrypoint=argv(self.entrypoint), cmd=argv(self.cmd), workdir=workdir, env=env
        )


@dataclass(frozen=True)
class _PathMap:
    context: str
    root: Path

    def path(self, value: str, must_exist: bool = True) -> str | None:
        if not value.startswith("/") or value.startswith("//"):
            return None
        norm = posixpath.normpath(value)
        base = self.context.rstrip("/")
        if norm != self.context and not norm.startswith(base + "/"):
            return None
        rel = norm[len(base) :].lstrip("/")
        local = self.root / rel if rel else self.root
        if must_exist and (not rel or not local.exists()):
            return None
        return str(local)


@dataclass
class _Stage:
    name: str
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    cmd_set_here: bool = False
    workdir: str = "/"
    env: dict[str, str] = field(default_factory=dict)
    args: dict[str, str] = field(default_factory=dict)
    shell: tuple[str, ...] = DEFAULT_SHELL
    context: str | None = None

    def inherit(self, name: str) -> _Stage:
        return _Stage(
            name, self.entrypoint, self.cmd, False, self.workdir, dict(self.env), {},
            self.shell, self.context,
        )

    def variables(self) -> dict[str, str]:
        return {**self.args, **self.env}


def expand(text: str, variables: Mapping[str, str], keep_unknown: bool = False) -> str:
    """Docker's variable substitution (``\\$`` is a literal ``$``). With ``keep_unknown`` a
    variable not in ``variables`` stays as written, and so does ``\\$``, for a later
    :func:`expand` against a process's environment."""

    def one(m: re.Match[str]) -> str:
        name = m.group("bare") or m.group("name")
        op, word = m.group("op"), m.group("word") or ""
        if name not in variables:
            if keep_unknown:
                return m.group(0)
            return word if op == ":-" else ""
        value = variables[name]
        if op == ":-":
            return value or word
        if op == ":+":
            return word if value else ""
        return value

    out = _VARIABLE.sub(one, text.replace("\\$", _ESCAPED_DOLLAR))
    return out.replace(_ESCAPED_DOLLAR, "\\$" if keep_unknown else "$")


def parse_file(path: str | os.PathLike[str]) -> ContainerConfig:
    """:func:`parse` of the file at ``path``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DockerfileError(f"cannot read {str(p)!r}: {e}") from None
    return parse(text, str(p))


def parse(text: str, where: str = "Dockerfile") -> ContainerConfig:
    """The start-up settings of the image the Dockerfile ``text`` builds (its last stage)."""
    from dockerfile_parse import DockerfileParser

    parser = DockerfileParser(fileobj=io.BytesIO(text.encode("utf-8")))
    global_args: dict[str, str] = {}
    stages: dict[str, _Stage] = {}
    stage: _Stage | None = None
    for item in parser.structure:
        instruction, value = item["instruction"], item["value"].strip()
        line = int(item["startline"]) + 1

        def fail(message: str, line: int = line, instruction: str = instruction) -> DockerfileError:
            return DockerfileError(f"{where}, line {line} ({instruction}): {message}")

        if instruction == "COMMENT":
            continue
        if instruction == "FROM":
            stage = _from(value, stages, global_args, len(stages), fail)
            stages[stage.name] = stage
            continue
        if instruction == "ARG":
            target = global_args if stage is None else stage.args
            for key, default in _arg(value, fail):
                if default is None:
                    default = global_args.get(key, "") if stage is not None else ""
                known = target if stage is None else stage.variables()
                target[key] = expand(default, known)
            continue
        if stage is None:
            raise fail("only ARG may come before the first FROM")
        _apply(stage, instruction, value, fail)
    if stage is None:
        raise DockerfileError(f"{where}: no FROM instruction (not a Dockerfile)")
    return ContainerConfig(
        entrypoint=stage.entrypoint,
        cmd=stage.cmd,
        workdir=stage.workdir,
        env=tuple(stage.env.items()),
        context=stage.context or stage.workdir,
    )


def _from(
    value: str, stages: dict[str, _Stage], global_args: dict[str, str], index: int, fail: Any
) -> _Stage:
    words = [w for w in value.split() if not w.startswith("--")]
    if not words:
        raise fail("FROM needs an image")
    image = expand(words[0], global_args)
    name = str(index)
    if len(words) >= 3 and words[1].lower() == "as":
        name = words[2].lower()
    elif len(words) != 1:
        raise fail(f"expected 'FROM image [AS name]', got {value!r}")
    parent = stages.get(image.lower())
    return parent.inherit(name) if parent is not None else _Stage(name)


def _arg(value: str, fail: Any) -> list[tuple[str, str | None]]:
    """``ARG name[=default] ...``: (name, default or None)."""
    if not value:
        raise fail("ARG needs a name")
    out: list[tuple[str, str | None]] = []
    for word in value.replace("\\$", _ESCAPED_DOLLAR).split():
        key, eq, default = word.partition("=")
        out.append((key, default.strip('"').strip("'") if eq else None))
    return out


def _env_pairs(value: str, fail: Any) -> list[tuple[str, str]]:
    """``ENV k=v k2="v 2"`` or the legacy ``ENV k v...``; values keep their ``$`` references."""
    from dockerfile_parse.util import extract_key_values

    if not value:
        raise fail("ENV needs name=value")
    try:
        pairs = extract_key_values(False, {}, {}, value.replace("\\$", _ESCAPED_DOLLAR))
    except (ValueError, IndexError) as e:
        raise fail(str(e)) from None
    return [(str(k), str(v)) for k, v in pairs]


def _command(value: str, shell: tuple[str, ...]) -> tuple[str, ...]:
    """Exec form (a JSON array of strings) or shell form (``SHELL`` + the text)."""
    if value.startswith("["):
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        if isinstance(parsed, list) and all(isinstance(v, str) for v in parsed):
            return tuple(parsed)
    return (*shell, value) if value else ()


def _copy_sources(value: str) -> tuple[list[str], str] | None:
    """``(sources, destination)`` of a COPY/ADD from the build context (None: ``--from=``)."""
    words = value.split()
    flags = [w for w in words if w.startswith("--")]
    if any(f.startswith("--from") for f in flags):
        return None
    rest = " ".join(w for w in words if not w.startswith("--"))
    if rest.startswith("["):
        try:
            parts = json.loads(rest)
        except ValueError:
            return None
    else:
        parts = rest.split()
    if not isinstance(parts, list) or len(parts) < 2:
        return None
    return [str(p) for p in parts[:-1]], str(parts[-1])


def _apply(stage: _Stage, instruction: str, value: str, fail: Any) -> None:
    if instruction == "ENV":
        known = stage.variables()  # all pairs of one ENV see the values from before it
        for key, raw in _env_pairs(value, fail):
            stage.env[key] = expand(raw, known, keep_unknown=True)
    elif instruction == "WORKDIR":
        if not value:
            raise fail("WORKDIR needs a path")
        path = expand(value, stage.variables(), keep_unknown=True)
        stage.workdir = posixpath.normpath(posixpath.join(stage.workdir, path))
    elif instruction == "ENTRYPOINT":
        stage.entrypoint = _command(value, stage.shell) or None
        if not stage.cmd_set_here:
            stage.cmd = None  # Docker: ENTRYPOINT resets an inherited CMD
    elif instruction == "CMD":
        stage.cmd = _command(value, stage.shell) or None
        stage.cmd_set_here = True
    elif instruction == "SHELL":
        shell = _command(value, ())
        if not value.startswith("[") or not shell:
            raise fail(f"SHELL must be a JSON array of strings, got {value!r}")
        stage.shell = shell
    elif instruction in ("COPY", "ADD"):
        copied = _copy_sources(value)
        if copied is not None and any(s.rstrip("/") in (".", "") for s in copied[0]):
            dest = expand(copied[1], stage.variables(), keep_unknown=True)
            stage.context = posixpath.normpath(posixpath.join(stage.workdir, dest))
