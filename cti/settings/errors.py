"""What a configuration that cannot be used is reported as: every problem, with its line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["ConfigError", "ConfigProblem"]


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong with the configuration.

    Attributes:
        path: dotted field path (``ami.nodes.0.secret``), or the file name for problems
            with the file as a whole (missing, not YAML).
        message: what is wrong, in pydantic's words plus a hint where one helps.
        line: 1-based line in the YAML file of the key, or of its nearest existing ancestor
            when the key itself is missing; ``None`` when the value came from elsewhere.
    """

    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f" (line {self.line})" if self.line is not None else ""
        return f"{self.path}: {self.message}{where}"


class ConfigError(Exception):
    """The configuration cannot be used; :attr:`problems` lists every reason."""

    def __init__(self, problems: list[ConfigProblem], *, path: Path | None = None) -> None:
        self.problems = problems
        self.path = path
        head = f"{len(problems)} configuration problem(s)" + (f" in {path}" if path else "")
        super().__init__("\n  ".join([head + ":", *map(str, problems)]))
