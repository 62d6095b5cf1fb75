"""The emulator's Cloud Logging subset (``entries:list``) through the real ``google-cloud-logging``
client, and its filter language on its own (a table)."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from _helpers import worker_pool

from hydra_vertex.cloud_logs import follow, job_filter, read
from hydra_vertex.emulator import EmulatorHandle
from hydra_vertex.emulator.logging_api import matches, parse_filter
from hydra_vertex.emulator.router import ApiError
from hydra_vertex.vertex import Endpoint, logging_client

ENTRY = {
    "resource": {"type": "ml_job", "labels": {"job_id": "42", "task_name": "workerpool0-0"}},
    "labels": {"trial_id": "3", "ml.googleapis.com/trial_id": "3"},
    "severity": "ERROR",
    "timestamp": "2026-05-01T10:00:00.250000Z",
    "textPayload": "RuntimeError: diverged at lr=0.5",
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", True),
        ('resource.type="ml_job"', True),
        ('resource.type="ml_job" AND resource.labels.job_id="42"', True),
        ('resource.type="ml_job" resource.labels.job_id="41"', False),  # juxtaposition is AND
        ('labels.trial_id="3"', True),
        ('labels."ml.googleapis.com/trial_id"="3"', True),
        ('(labels.trial_id="9" OR labels."ml.googleapis.com/trial_id"="3")', True),
        ('resource.labels.job_id="41" OR labels.trial_id="3" AND severity=INFO', False),  # OR binds tighter
        ('NOT labels.trial_id="3"', False),
        ('-labels.trial_id="4"', True),
        ("severity>=WARNING", True),
        ("severity<ERROR", False),
        ('timestamp>="2026-05-01T10:00:00Z"', True),
        ('timestamp>="2026-05-01T10:00:00.250000001Z"', True),  # nanoseconds: same microsecond
        ('timestamp>"2026-05-01T10:00:00.25Z"', False),
        ('timestamp<"2026-05-01T12:00:00+02:00"', False),
        ('textPayload:"diverged"', True),
        ('textPayload=~"lr=0\\.[0-9]"', True),
        ('labels.nothing="x"', False),
        ('labels.nothing!="x"', True),
    ],
)
def test_the_filter_language(text: str, expected: bool) -> None:
    assert matches(parse_filter(text), ENTRY) is expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('resource.type=', "ends too early"),
        ('(labels.trial_id="3"', "is not closed"),
        ('timestamp>="yesterday"', "invalid timestamp"),
        ("severity>=LOUD", "unknown severity"),
        ('labels.trial_id "3"', "expected a comparison"),
    ],
)
def test_a_bad_filter_is_a_400_naming_it(text: str, message: str) -> None:
    with pytest.raises(ApiError) as e:
        matches(parse_filter(text), ENTRY)
    assert e.value.code == 400 and message in e.value.message


def _custom_job(sdk: Any, code: str, name: str = "logs") -> Any:
    job = sdk.CustomJob(display_name=name,
                        worker_pool_specs=worker_pool([sys.executable, "-c", code]))
    job.run()
    return job


def test_a_jobs_lines_through_the_logging_client(emulator: EmulatorHandle, sdk: Any) -> None:
    code = ("import sys\nfor i in range(120): print(f'line {i}')\n"
            "print('oops', file=sys.stderr)\nprint('no newline at the end', end='')")
    job = _custom_job(sdk, code)
    client = logging_client("test-project", Endpoint(emulator.endpoint, emulator.token, True))
    since = job.create_time - timedelta(seconds=1)
    lines = read(client, "test-project", job_filter(job.name, since=since))
    texts = [line.text for line in lines]
    assert [t for t in texts if t.startswith("line ")] == [f"line {i}" for i in range(120)]
    assert "oops" in texts and texts.count("no newline at the end") == 1  # the job ended: all of it
    assert len({line.insert_id for line in lines}) == len(lines)
    stamps = [line.timestamp for line in lines]
    assert stamps == sorted(stamps) and all(s is not None for s in stamps)
    errors = read(client, "test-project", job_filter(job.name, since=since) + " AND severity>=ERROR")
    assert [(e.text, e.severity) for e in errors] == [("oops", "ERROR")]
    # another project sees none; a filter on another job none
    assert read(client, "other-project", job_filter(job.name, since=since)) == []
    assert read(client, "test-project", job_filter("1", since=since)) == []


def test_a_bad_filter_reaches_the_client_as_bad_request(emulator: EmulatorHandle) -> None:
    from google.api_core import exceptions

    client = logging_client("test-project", Endpoint(emulator.endpoint, emulator.token, True))
    with pytest.raises(exceptions.BadRequest, match="invalid filter"):
        read(client, "test-project", 'timestamp>="2026-01-01T00:00:00Z" AND (')


def test_follow_skips_what_it_saw_and_ends_after_the_end(emulator: EmulatorHandle, sdk: Any) -> None:
    job = _custom_job(sdk, "print('a'); print('b')")
    client = logging_client("test-project", Endpoint(emulator.endpoint, emulator.token, True))
    base = job_filter(job.name, since=datetime.now(UTC) - timedelta(hours=1))
    calls: list[str] = []

    def fetch(since: datetime | None) -> list[Any]:
        flt = base if since is None else f'{base} AND timestamp>="{since.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}"'
        calls.append(flt)
        return read(client, "test-project", flt)

    ends = iter([False, False, True])
    got = [line.text for line in follow(fetch, lambda: next(ends), interval=0, sleep=time.sleep)]
    assert got == ["a", "b"]  # each once, although every poll after the first asks again
    assert len(calls) == 3 and "timestamp>=" in calls[-1].split(base)[-1]
