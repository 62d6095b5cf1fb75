"""Helpers of the browser tests (kept out of conftest.py so that test modules can import them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"


def screenshot(driver: Any, name: str) -> Path:
    """A full-page PNG under test-artifacts/browser/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(1280, max(600, min(height + 40, 8000)))
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(1280, 900)
    return path


def page_errors(driver: Any) -> list[str]:
    """SEVERE console messages since the last call (CSP violations, failed loads), favicon aside."""
    return [
        str(entry.get("message"))
        for entry in driver.get_log("browser")
        if entry.get("level") == "SEVERE" and "favicon.ico" not in str(entry.get("message"))
    ]


@dataclass
class DigitsRun:
    work: Path
    state: Path
    summary: dict[str, Any]
    summary_path: Path
    report: Path
