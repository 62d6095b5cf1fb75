"""The Cloud Storage JSON API subset the official clients use, on the emulator's storage root.

``gs://BUCKET/NAME`` is the file ``Store.storage_root/BUCKET/NAME`` (where a job's ``gs://`` paths
map to, :meth:`Store.local_path`), so objects uploaded with ``google-cloud-storage`` are seen by
jobs and the other way round. A bucket exists when its directory does. Served (with
``STORAGE_EMULATOR_HOST=<emulator endpoint>`` and the emulator's bearer token as credentials):

- buckets: get, insert (``POST /storage/v1/b?project=``), delete (empty only), IAM policy get/set
  (kept, not enforced: ``aiplatform`` sets one on the pipeline bucket it creates);
- objects: get metadata, download (``alt=media``, also under ``/download/``; ``Range`` honoured),
  list (``prefix``, ``delimiter``, ``maxResults``/``pageToken``, ``startOffset``/``endOffset``),
  delete, upload (``uploadType=media|multipart|resumable``, ``ifGenerationMatch``).

Object names map to path segments: names with an empty, ``.`` or ``..`` segment, a NUL, or a
trailing ``/`` are refused (400), as is a name whose path is taken by a "directory" of other
objects (409). Writes go to a temporary file under ``state_dir/gcs/tmp`` and are renamed into place
(fsync'd). Small metadata (content type, custom metadata, bucket records, IAM policies) lives under
``state_dir/gcs/``. Symlinks inside the storage root are never followed or listed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import google_crc32c

from hydra_vertex.emulator.router import ApiError, Raw, Request, Route, json_body
from hydra_vertex.emulator.store import Store, atomic_write_json
from hydra_vertex.files import atomic_write_bytes
from hydra_vertex.local_conventions import project_number

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")
_CONTENT_RANGE_RE = re.compile(r"^bytes (?:(\d+)-(\d+)|\*)/(\d+|\*)$")
_UPLOAD_SESSION_TTL = 7 * 24 * 3600


def _rfc3339(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def _hashes(path: Path) -> tuple[str, str]:
    md5, crc = hashlib.md5(usedforsecurity=False), google_crc32c.Checksum()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            md5.update(chunk)
            crc.update(chunk)
    return _b64(md5.digest()), _b64(crc.digest())


class GcsService:
    """Answers ``/storage/v1/...``, ``/upload/storage/v1/...`` and ``/download/storage/v1/...``."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.meta_root = store.root / "gcs"
        self.tmp_dir = self.meta_root / "tmp"
        self._lock = threading.Lock()

    def routes(self) -> list[Route]:
        b, o = "/storage/v1/b/{bucket}", "/storage/v1/b/{bucket}/o/{object=**}"
        return [
            Route("GET", "/storage/v1/b", self.list_buckets),
            Route("POST", "/storage/v1/b", self.insert_bucket),
            Route("GET", b, self.get_bucket),
            Route("DELETE", b, self.delete_bucket),
            Route("GET", f"{b}/iam", self.get_iam),
            Route("PUT", f"{b}/iam", self.set_iam),
            Route("GET", f"{b}/o", self.list_objects),
            Route("GET", o, self.get_object),
            Route("DELETE", o, self.delete_object),
            Route("GET", f"/download{o}", self.download),
            Route("POST", f"/upload{b}/o", self.upload),
            Route("PUT", f"/upload{b}/o", self.resumable_put),
        ]

    # -- paths -----------------------------------------------------------------------------------
    def _bucket_dir(self, bucket: str, must_exist: bool = True) -> Path:
        if not _BUCKET_RE.match(bucket) or ".." in bucket:
            raise ApiError(400, f"invalid bucket name {bucket!r} (3-222 of a-z 0-9 . _ -)")
        path = self.store.storage_root / bucket
        if must_exist and (path.is_symlink() or not path.is_dir()):
            raise ApiError(404, f"The specified bucket does not exist: {bucket}")
        return path

    def _object_path(self, bucket: str, name: str) -> Path:
        parts = name.split("/")
        if (
            not name
            or len(name.encode()) > 1024
            or any(p in ("", ".", "..") for p in parts)
            or any(c in name for c in "\0\r\n")
        ):
            raise ApiError(
                400,
                f"object name {name!r} is not supported by the emulator's file-backed storage "
                "(no empty, '.' or '..' segments, no trailing '/', no NUL or newline, "
                "at most 1024 bytes)",
            )
        base = self._bucket_dir(bucket)
        path = base.joinpath(*parts)
        cur = base
        for p in parts[:-1]:  # no symlinked directory on the way
            cur = cur / p
            if cur.is_symlink():
                raise ApiError(404, f"No such object: {bucket}/{name}")
        return path

    def _sidecar(self, bucket: str, name: str) -> Path:
        key = hashlib.sha256(name.encode()).hexdigest()
        return self.meta_root / "objects" / bucket / f"{key}.json"

    # -- resources -------------------------------------------------------------------------------
    def _bucket_resource(self, bucket: str) -> dict[str, Any]:
        path = self._bucket_dir(bucket)
        rec = self._read_json(self.meta_root / "buckets" / f"{bucket}.json") or {}
        created = rec.get("timeCreated") or _rfc3339(path.stat().st_mtime)
        out = {
            "kind": "storage#bucket",
            "id": bucket,
            "name": bucket,
            "selfLink": f"/storage/v1/b/{bucket}",
            "location": rec.get("location", "US-CENTRAL1"),
            "locationType": "region",
            "storageClass": "STANDARD",
            "metageneration": "1",
            "etag": "CAE=",
            "timeCreated": created,
            "updated": created,
            "iamConfiguration": {
                "uniformBucketLevelAccess": {"enabled": True},
                "publicAccessPrevention": "enforced",
            },
        }
        if rec.get("projectNumber"):
            out["projectNumber"] = rec["projectNumber"]
        elif rec.get("project"):
            out["projectNumber"] = project_number(rec["project"])
        if rec.get("labels"):
            out["labels"] = rec["labels"]
        return out

    def _object_resource(self, request: Request, bucket: str, name: str) -> dict[str, Any]:
        path = self._object_path(bucket, name)
        if path.is_symlink() or not path.is_file():
            raise ApiError(404, f"No such object: {bucket}/{name}")
        st = path.stat()
        side = self._read_json(self._sidecar(bucket, name)) or {}
        if side.get("size") == st.st_size and side.get("mtime_ns") == st.st_mtime_ns:
            md5, crc = side["md5Hash"], side["crc32c"]
        else:  # written by a job, not through the API: hash it now
            md5, crc = _hashes(path)
        generation = str(st.st_mtime_ns // 1000)
        host = request.headers.get("Host", "127.0.0.1")
        quoted = quote(name, safe="")
        out: dict[str, Any] = {
            "kind": "storage#object",
            "id": f"{bucket}/{name}/{generation}",
            "selfLink": f"http://{host}/storage/v1/b/{bucket}/o/{quoted}",
            "mediaLink": (
                f"http://{host}/download/storage/v1/b/{bucket}/o/{quoted}"
                f"?generation={generation}&alt=media"
            ),
            "name": name,
            "bucket": bucket,
            "generation": generation,
            "metageneration": "1",
            "contentType": side.get("contentType", "application/octet-stream"),
            "storageClass": "STANDARD",
            "size": str(st.st_size),
            "md5Hash": md5,
            "crc32c": crc,
            "etag": _b64(bytes.fromhex(hashlib.sha256(generation.encode()).hexdigest()[:16])),
            "timeCreated": _rfc3339(st.st_mtime),
            "updated": _rfc3339(st.st_mtime),
        }
        for key in ("metadata", "contentEncoding", "contentDisposition", "cacheControl"):
            if side.get(key):
                out[key] = side[key]
        return out

    @staticmethod
    def _read_json(path: Path) -> dict[str, Any] | None:
        if path.is_symlink():
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    # -- buckets ---------------------------------------------------------------------------------
    def list_buckets(self, request: Request) -> tuple[int, Any]:
        root = self.store.storage_root
        names = sorted(
            p.name
            for p in (root.iterdir() if root.is_dir() else [])
            if p.is_dir() and not p.is_symlink() and _BUCKET_RE.match(p.name)
        )
        prefix = request.query.get("prefix", "")
        items = [self._bucket_resource(n) for n in names if n.startswith(prefix)]
        return 200, {"kind": "storage#buckets", "items": items}

    def insert_bucket(self, request: Request) -> tuple[int, Any]:
        body = json_body(request.body)
        bucket = body.get("name")
        if not isinstance(bucket, str):
            raise ApiError(400, "bucket insert needs a 'name' in the body")
        path = self._bucket_dir(bucket, must_exist=False)
        with self._lock:
            if path.exists():
                raise ApiError(
                    409,
                    "Your previous request to create the named bucket succeeded and you already "
                    f"own it: {bucket}",
                    "CONFLICT",
                )
            path.mkdir(parents=True, mode=0o700)
            rec = {
                "timeCreated": _rfc3339(time.time()),
                "location": str(body.get("location") or "US-CENTRAL1").upper(),
                "project": request.query.get("project", ""),
                "labels": body.get("labels") or {},
            }
            atomic_write_json(self.meta_root / "buckets" / f"{bucket}.json", rec)
        return 200, self._bucket_resource(bucket)

    def get_bucket(self, request: Request, bucket: str) -> tuple[int, Any]:
        return 200, self._bucket_resource(bucket)

    def delete_bucket(self, request: Request, bucket: str) -> tuple[int, Any]:
        path = self._bucket_dir(bucket)
        with self._lock:
            if any(self._walk(path, "")):
                raise ApiError(409, f"The bucket you tried to delete is not empty: {bucket}")
            for sub in sorted(path.rglob("*"), reverse=True):  # empty directories only
                if sub.is_dir() and not sub.is_symlink():
                    sub.rmdir()
            path.rmdir()
            (self.meta_root / "buckets" / f"{bucket}.json").unlink(missing_ok=True)
        return 204, Raw(b"", "application/json")

    def get_iam(self, request: Request, bucket: str) -> tuple[int, Any]:
        self._bucket_dir(bucket)
        policy = self._read_json(self.meta_root / "iam" / f"{bucket}.json") or {"bindings": []}
        return 200, {
            "kind": "storage#policy",
            "resourceId": f"projects/_/buckets/{bucket}",
            "version": 1,
            "etag": "CAE=",
            **policy,
        }

    def set_iam(self, request: Request, bucket: str) -> tuple[int, Any]:
        self._bucket_dir(bucket)
        body = json_body(request.body)
        policy = {"bindings": body.get("bindings") or []}
        atomic_write_json(self.meta_root / "iam" / f"{bucket}.json", policy)
        return self.get_iam(request, bucket)

    # -- objects ---------------------------------------------------------------------------------
    def _walk(self, base: Path, start: str) -> Iterator[str]:
        """Object names under ``base`` (sorted), starting in the sub-directory ``start``."""
        top = base.joinpath(*start.split("/")) if start else base
        if top.is_symlink() or not top.is_dir():
            return
        for root, dirs, files in os.walk(top):
            dirs[:] = [d for d in dirs if not (Path(root) / d).is_symlink()]
            rel = Path(root).relative_to(base).as_posix()
            for f in files:
                p = Path(root) / f
                if p.is_file() and not p.is_symlink() and not any(c in f for c in "\r\n"):
                    yield f if rel == "." else f"{rel}/{f}"

    def list_objects(self, request: Request, bucket: str) -> tuple[int, Any]:
        base = self._bucket_dir(bucket)
        q = request.query
        prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
        start_dir = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        if any(p in (".", "..") for p in start_dir.split("/")):
            start_dir = ""
        try:
            limit = max(1, min(int(q.get("maxResults", "1000")), 1000))
            offset = int(q.get("pageToken") or 0)
        except ValueError:
            raise ApiError(400, "maxResults and pageToken must be integers") from None
        names = sorted(n for n in self._walk(base, start_dir) if n.startswith(prefix))
        if q.get("startOffset"):
            names = [n for n in names if n >= q["startOffset"]]
        if q.get("endOffset"):
            names = [n for n in names if n < q["endOffset"]]
        entries: list[tuple[str, bool]] = []  # (name or prefix, is_prefix), in order
        seen: set[str] = set()
        for n in names:
            cut = n.find(delimiter, len(prefix)) if delimiter else -1
            if cut >= 0:
                p = n[: cut + len(delimiter)]
                if p not in seen:
                    seen.add(p)
                    entries.append((p, True))
            else:
                entries.append((n, False))
        page = entries[offset : offset + limit]
        out: dict[str, Any] = {"kind": "storage#objects"}
        items = [self._object_resource(request, bucket, n) for n, is_p in page if not is_p]
        prefixes = [n for n, is_p in page if is_p]
        if items:
            out["items"] = items
        if prefixes:
            out["prefixes"] = prefixes
        if offset + limit < len(entries):
            out["nextPageToken"] = str(offset + limit)
        return 200, out

    def get_object(self, request: Request, bucket: str, object: str) -> tuple[int, Any]:
        if request.query.get("alt") == "media":
            return self.download(request, bucket, object)
        return 200, self._object_resource(request, bucket, object)

    def download(self, request: Request, bucket: str, object: str) -> tuple[int, Any]:
        resource = self._object_resource(request, bucket, object)
        path = self._object_path(bucket, object)
        data = path.read_bytes()
        headers = {
            "x-goog-hash": f"crc32c={resource['crc32c']},md5={resource['md5Hash']}",
            "x-goog-generation": resource["generation"],
            "x-goog-metageneration": "1",
            "x-goog-stored-content-length": str(len(data)),
            "ETag": resource["etag"],
            "Accept-Ranges": "bytes",
        }
        rng = request.headers.get("Range")
        m = _RANGE_RE.match(rng.strip()) if rng else None
        if m and (m[1] or m[2]):
            size = len(data)
            if m[1]:
                start, end = int(m[1]), (int(m[2]) if m[2] else size - 1)
            else:
                start, end = max(0, size - int(m[2])), size - 1
            end = min(end, size - 1)
            if start >= size or start > end:
                if size == 0 and start == 0:
                    return 200, Raw(data, resource["contentType"], headers)
                raise ApiError(416, f"Request range not satisfiable: {rng}", "OUT_OF_RANGE")
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            return 206, Raw(data[start : end + 1], resource["contentType"], headers)
        return 200, Raw(data, resource["contentType"], headers)

    def delete_object(self, request: Request, bucket: str, object: str) -> tuple[int, Any]:
        path = self._object_path(bucket, object)
        with self._lock:
            if path.is_symlink() or not path.is_file():
                raise ApiError(404, f"No such object: {bucket}/{object}")
            path.unlink()
            self._sidecar(bucket, object).unlink(missing_ok=True)
        return 204, Raw(b"", "application/json")

    # -- uploads ---------------------------------------------------------------------------------
    def upload(self, request: Request, bucket: str) -> tuple[int, Any]:
        kind = request.query.get("uploadType", "")
        self._bucket_dir(bucket)
        if kind == "media":
            name = request.query.get("name", "")
            ctype = request.headers.get("Content-Type") or "application/octet-stream"
            return self._write(request, bucket, name, request.body, {"contentType": ctype})
        if kind == "multipart":
            meta, data, ctype = _multipart(request)
            name = request.query.get("name") or meta.get("name", "")
            meta.setdefault("contentType", ctype)
            return self._write(request, bucket, name, data, meta)
        if kind == "resumable":
            meta = json_body(request.body) if request.body else {}
            name = request.query.get("name") or meta.get("name", "")
            self._object_path(bucket, name)  # validate now, not after the bytes
            meta.setdefault(
                "contentType",
                request.headers.get("X-Upload-Content-Type") or "application/octet-stream",
            )
            upload_id = secrets.token_hex(16)
            session = {
                "bucket": bucket,
                "name": name,
                "meta": meta,
                "query": {k: v for k, v in request.query.items() if k.startswith("if")},
                "created": time.time(),
            }
            atomic_write_json(self._session_path(upload_id), session)
            host = request.headers.get("Host", "127.0.0.1")
            location = (
                f"http://{host}/upload/storage/v1/b/{bucket}/o?uploadType=resumable"
                f"&upload_id={upload_id}"
            )
            return 200, Raw(b"", "text/plain", {"Location": location})
        raise ApiError(400, f"uploadType {kind!r} is not supported (media, multipart, resumable)")

    def _session_path(self, upload_id: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{32}", upload_id):
            raise ApiError(404, f"no resumable upload session {upload_id!r}")
        return self.meta_root / "uploads" / f"{upload_id}.json"

    def resumable_put(self, request: Request, bucket: str) -> tuple[int, Any]:
        upload_id = request.query.get("upload_id", "")
        session_path = self._session_path(upload_id)
        session = self._read_json(session_path)
        if session is None or session["bucket"] != bucket:
            raise ApiError(404, f"no resumable upload session {upload_id!r}")
        if time.time() - session["created"] > _UPLOAD_SESSION_TTL:
            raise ApiError(410, "the resumable upload session expired", "GONE")
        part = session_path.with_suffix(".part")
        have = part.stat().st_size if part.exists() else 0
        cr = request.headers.get("Content-Range", "")
        m = _CONTENT_RANGE_RE.match(cr.strip()) if cr else None
        if cr and not m:
            raise ApiError(400, f"invalid Content-Range {cr!r}")
        total = int(m[3]) if m and m[3] != "*" else None
        if m and m[1] is not None:
            start = int(m[1])
            if start != have:
                if start < have:  # a retried chunk: keep what we have, take the rest
                    skip = have - start
                    request_body = request.body[skip:]
                else:
                    raise ApiError(400, f"chunk starts at {start}, {have} bytes received so far")
            else:
                request_body = request.body
        else:
            request_body = request.body if not m else b""
        if request_body:
            with open(part, "ab") as f:
                f.write(request_body)
            have += len(request_body)
        if total is None and m is not None:
            if have == 0:
                return 308, Raw(b"", "text/plain")
            return 308, Raw(b"", "text/plain", {"Range": f"bytes=0-{have - 1}"})
        if total is not None and have < total:
            return 308, Raw(b"", "text/plain", {"Range": f"bytes=0-{have - 1}"})
        data = part.read_bytes() if part.exists() else b""
        req = Request(request.method, request.path, session["query"], request.headers, b"")
        answer = self._write(req, bucket, session["name"], data, session["meta"])
        part.unlink(missing_ok=True)
        session_path.unlink(missing_ok=True)
        return answer

    def _write(
        self, request: Request, bucket: str, name: str, data: bytes, meta: dict[str, Any]
    ) -> tuple[int, Any]:
        path = self._object_path(bucket, name)
        expected = meta.get("crc32c")
        md5, crc = (
            _b64(hashlib.md5(data, usedforsecurity=False).digest()),
            _b64(google_crc32c.Checksum(data).digest()),
        )
        if expected and expected != crc:
            raise ApiError(400, f"Provided CRC32C {expected!r} doesn't match calculated {crc!r}")
        if meta.get("md5Hash") and meta["md5Hash"] != md5:
            raise ApiError(400, f"Provided MD5 hash {meta['md5Hash']!r} doesn't match {md5!r}")
        with self._lock:
            if_gen = request.query.get("ifGenerationMatch")
            exists = path.is_file() and not path.is_symlink()
            if if_gen is not None:
                current = str(path.stat().st_mtime_ns // 1000) if exists else "0"
                if if_gen != current:
                    raise ApiError(
                        412,
                        "At least one of the pre-conditions you specified did not hold.",
                        "FAILED_PRECONDITION",
                    )
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                raise ApiError(
                    409,
                    f"object name {name!r} needs a directory where an object already is "
                    "(the emulator's storage is file-backed)",
                    "CONFLICT",
                ) from None
            if path.is_dir():
                raise ApiError(
                    409,
                    f"object name {name!r} is a prefix of other objects (the emulator's storage "
                    "is file-backed)",
                    "CONFLICT",
                )
            # the temporary goes outside the bucket, so that no listing ever shows it
            atomic_write_bytes(path, data, mode=0o600, tmp_dir=self.tmp_dir)
            st = path.stat()
            side = {
                "size": st.st_size,
                "mtime_ns": st.st_mtime_ns,
                "md5Hash": md5,
                "crc32c": crc,
                "contentType": meta.get("contentType") or "application/octet-stream",
            }
            for key in ("metadata", "contentEncoding", "contentDisposition", "cacheControl"):
                if meta.get(key):
                    side[key] = meta[key]
            atomic_write_json(self._sidecar(bucket, name), side)
        return 200, self._object_resource(request, bucket, name)


def _multipart(request: Request) -> tuple[dict[str, Any], bytes, str]:
    """(metadata, data, data content type) of a ``multipart/related`` upload body."""
    ctype = request.headers.get("Content-Type", "")
    m = re.search(r'boundary="?([^";]+)"?', ctype)
    if not ctype.startswith("multipart/related") or not m:
        raise ApiError(400, f"multipart upload needs a multipart/related boundary, got {ctype!r}")
    delim = b"--" + m[1].encode()
    parts = request.body.split(delim)
    # ['', part1, part2, '--\r\n'] : each part is CRLF headers CRLF CRLF body CRLF
    chunks = [p for p in parts[1:] if not p.startswith(b"--")]
    if len(chunks) != 2:
        raise ApiError(400, f"multipart upload needs 2 parts (metadata, data), got {len(chunks)}")
    decoded: list[tuple[dict[str, str], bytes]] = []
    for chunk in chunks:
        head, sep, body = chunk.lstrip(b"\r\n").partition(b"\r\n\r\n")
        if not sep:
            raise ApiError(400, "malformed multipart part (no blank line after its headers)")
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        decoded.append((headers, body[:-2] if body.endswith(b"\r\n") else body))
    meta = json_body(decoded[0][1])
    return meta, decoded[1][1], decoded[1][0].get("content-type", "application/octet-stream")
