"""Findings of ``magsync check`` and the plain-words report they make.

A ``Finding`` is one statement about one subject: ``ok``, ``warn`` (works, but worth a look),
``fail`` (magsync will not work as configured; ``fix`` says what to do) or ``skip`` (not checked,
and why). The report prints them under their check's title; any ``fail`` makes the exit code 1.
Nothing here prints a setting's value: findings name variables, never secrets.
"""

import textwrap
from dataclasses import dataclass, field

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
_LABELS = {OK: "ok", WARN: "warn", FAIL: "FAIL", SKIP: "skip"}
INDENT = "  "
WIDTH = 6  # label column
COLUMNS = 100


@dataclass(frozen=True)
class Finding:
    status: str
    subject: str
    detail: str
    fix: str = ""

    @classmethod
    def ok(cls, subject, detail):
        return cls(OK, subject, detail)

    @classmethod
    def warn(cls, subject, detail, fix=""):
        return cls(WARN, subject, detail, fix)

    @classmethod
    def fail(cls, subject, detail, fix):
        return cls(FAIL, subject, detail, fix)

    @classmethod
    def skip(cls, subject, detail):
        return cls(SKIP, subject, detail)


@dataclass
class Report:
    """Findings by check title, in the order the checks ran."""

    sections: list = field(default_factory=list)  # [(title, [Finding, ...])]

    def add(self, title, findings):
        self.sections.append((title, list(findings)))

    def findings(self):
        return [f for _, found in self.sections for f in found]

    def count(self, status):
        return sum(f.status == status for f in self.findings())

    @property
    def failed(self):
        return self.count(FAIL) > 0

    @property
    def exit_code(self):
        return 1 if self.failed else 0

    def render(self):
        """The report as text: a section per check, a line per finding, its fix below."""
        lines = []
        hang = INDENT + " " * WIDTH
        for title, found in self.sections:
            lines.append(title)
            for finding in found:
                label = INDENT + _LABELS[finding.status].ljust(WIDTH)
                lines.extend(_wrap(f"{finding.subject}: {finding.detail}", label, hang))
                if finding.fix:
                    lines.extend(_wrap(f"fix: {finding.fix}", hang, hang + "     "))
            lines.append("")
        failed, warned, passed = self.count(FAIL), self.count(WARN), self.count(OK)
        warnings = f"{warned} {'warning' if warned == 1 else 'warnings'}"
        if failed:
            lines.append(
                f"{failed} failed, {warnings}, {passed} ok: fix the failures above before going "
                "live."
            )
        else:
            lines.append(f"Ready: {passed} ok, {warnings}, nothing failed.")
        return "\n".join(lines) + "\n"


def _wrap(text, first, rest):
    return textwrap.wrap(
        text,
        COLUMNS,
        initial_indent=first,
        subsequent_indent=rest,
        break_long_words=False,
        break_on_hyphens=False,
    )
