"""The report of ``verify``: one named line per check (pass / fail / warn / skipped), as text and as JSON.

Example:
    >>> report = VerifyReport("demo.zip")
    >>> report.add("manifest", "pass", "12 files match manifest.json").line()
    'PASS     manifest        12 files match manifest.json'
    >>> report.summary()
    'verify demo.zip: 1 passed, 0 failed, 0 warned, 0 skipped: OK'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["STATUSES", "Check", "VerifyReport"]

STATUSES = ("pass", "fail", "warn", "skipped")


@dataclass(frozen=True)
class Check:
    """One line of a report: check name, status (one of :data:`STATUSES`) and a one-line detail."""

    name: str
    status: str
    detail: str

    def line(self) -> str:
        return f"{self.status.upper():<8} {self.name:<15} {self.detail}"


@dataclass
class VerifyReport:
    """All checks of one bundle; ``ok`` when none failed. ``folder``: the bundle checked (inside the ``with``)."""

    source: str
    strict: bool = False
    checks: list[Check] = field(default_factory=list)
    folder: Path | None = None

    def add(self, name: str, status: str, detail: str) -> Check:
        """Record a check; under ``strict`` a warning is recorded as a failure."""
        if status not in STATUSES:
            raise ValueError(f"unknown check status {status!r}; choose from: {', '.join(STATUSES)}")
        if self.strict and status == "warn":
            status, detail = "fail", f"{detail} (--strict)"
        check = Check(name, status, detail)
        self.checks.append(check)
        return check

    def status(self, name: str) -> str | None:
        return next((check.status for check in self.checks if check.name == name), None)

    @property
    def ok(self) -> bool:
        return not self.failures()

    def failures(self) -> list[Check]:
        return [check for check in self.checks if check.status == "fail"]

    def failure_summary(self) -> str:
        """The failed checks as ``name: detail; ...`` (empty when ok)."""
        return "; ".join(f"{check.name}: {check.detail}" for check in self.failures())

    def counts(self) -> dict[str, int]:
        return {status: sum(check.status == status for check in self.checks) for status in STATUSES}

    def summary(self) -> str:
        counts = self.counts()
        return (f"verify {self.source}: {counts['pass']} passed, {counts['fail']} failed, {counts['warn']} warned, "
                f"{counts['skipped']} skipped: {'OK' if self.ok else 'FAILED'}")

    def to_text(self) -> str:
        return "\n".join([*(check.line() for check in self.checks), self.summary()])

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "strict": self.strict, "ok": self.ok, "counts": self.counts(),
                "checks": [asdict(check) for check in self.checks]}
