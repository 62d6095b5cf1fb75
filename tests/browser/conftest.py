"""Headless Chromium for the browser tests, driven by selenium through Debian's chromedriver.

The browser is Debian's ``chromium`` and ``chromium-driver`` (``/usr/bin/chromium``,
``/usr/bin/chromedriver``; ``.ci/run`` installs them). Without them the tests are skipped with the
reason, except under CI (``CI=true``), where a missing browser is a failure: CI must run them.
Screenshots go to ``test-artifacts/browser/`` at the top of the repository.

``digits_run`` is one real ``hydra-vertex run --local`` of the digits example with a small budget,
shared by the report and console tests: its ``SUMMARY.json``, ``report.html`` and emulator state.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _browser import DigitsRun

from test_progress import small_digits_job

ROOT = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).with_name("hydra-vertex")
TRIALS = 6

# As the machine notes say: without the background-networking flags Chromium keeps trying to
# reach Google's hosts, which a closed network refuses.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--window-size=1280,900",
)


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _missing(reason: str) -> None:
    if _in_ci():
        pytest.fail(f"browser tests cannot run under CI: {reason}", pytrace=False)
    pytest.skip(f"no headless browser: {reason}")


def _find(names: tuple[str, ...]) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    chromium = os.environ.get("CHROMIUM") or _find(("chromium", "chromium-browser"))
    driver_path = os.environ.get("CHROMEDRIVER") or _find(("chromedriver",))
    if not (chromium and os.path.exists(chromium) and driver_path and os.path.exists(driver_path)):
        _missing(
            f"Debian's chromium and chromium-driver are not installed (found {chromium!r} and "
            f"{driver_path!r}; apt-get install chromium chromium-driver, as .ci/run does)"
        )
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium is not installed (it is in the 'dev' extra)")
        raise
    profile = tempfile.mkdtemp(prefix="hv-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(driver_path)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> DigitsRun:
    tmp = tmp_path_factory.mktemp("browser-digits")
    job_file = small_digits_job(tmp, TRIALS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYDRA_VERTEX_")}
    env.update(HYDRA_VERTEX_IMAGES=str(tmp / "images"), HYDRA_VERTEX_CACHE_DIR=str(tmp / "cache"))
    work = tmp / "work"
    work.mkdir()
    state = tmp / "state"
    done = subprocess.run(
        [str(CLI), "run", "--local", str(job_file), "-o", "SUMMARY.json", "--quiet",
         "--state-dir", str(state)],
        cwd=work, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary_path = work / "SUMMARY.json"
    report = work / "report.html"  # `hydra-vertex run` writes it next to the summary
    assert report.is_file(), f"no report.html next to SUMMARY.json in {work}"
    return DigitsRun(work, state, json.loads(summary_path.read_text()), summary_path, report)
