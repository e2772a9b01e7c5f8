"""What a configuration reload (SIGHUP, ``cti reload``) may change live, and what it may not.

:func:`plan_reload` compares the running configuration with a freshly loaded one (already
validated by :func:`~cti.settings.load.load_settings`, so a file with errors never gets
here) and returns the configuration to run with from now on: the running one with the
*live* settings taken from the new file. Every other difference is reported as needing a
restart and left as it is — never half-applied.

Live (:data:`LIVE`): the number plan (seats, skills, lines, hours, classes, overflow steps,
ring and wrap-up times, blacklist, emergency services), the HTTP API's bearer tokens and
the browser pages' users (``web.users``: a removed, disabled or changed user's sessions
and streams end; the rest of ``web`` — sessions, lockout, streams — needs a restart).
Not live (:data:`RESTART_IN_PLAN` and everything outside :data:`LIVE`): what a socket, a
pool, a task or a sort order was built from at start-up — AMI nodes, MQTT, the database,
HTTP and FastAGI listeners and limits, logging, the IVR flows, work orders, 110 feedback,
KPI settings, the dialplan section; and in the number plan the queue's aging (the sort key
of every waiting call) and the EWT estimator's settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from pydantic import BaseModel

from cti.settings.schema import Settings

__all__ = ["LIVE", "RESTART_IN_PLAN", "ReloadPlan", "changed_paths", "plan_reload"]

LIVE: Final = ("numberplan", "http.tokens", "web.users")
"""Settings (dotted prefixes) a reload applies to the running daemon."""

RESTART_IN_PLAN: Final = (
    "numberplan.queue.aging_per_s",
    "numberplan.queue.ewt_alpha",
    "numberplan.queue.ewt_default_handle_s",
)
"""Settings inside :data:`LIVE` that still need a restart (the waiting line's order and
the handle-time estimator are built from them)."""

_LEAF_DEPTH: Final = 3  # report `numberplan.queue.wrapup_s`, not a list's inner fields


@dataclass(frozen=True, slots=True, kw_only=True)
class ReloadPlan:
    """The outcome of comparing the running configuration with the file's.

    Attributes:
        settings: what to run with from now on (the running configuration, its live
            settings replaced by the file's).
        applied: dotted paths of the live settings that changed (applied now).
        needs_restart: dotted paths that changed but only take effect after a restart
            (left as they were).
    """

    settings: Settings
    applied: tuple[str, ...]
    needs_restart: tuple[str, ...]

    @property
    def plan_changed(self) -> bool:
        return any(p == "numberplan" or p.startswith("numberplan.") for p in self.applied)

    @property
    def tokens_changed(self) -> bool:
        return "http.tokens" in self.applied

    @property
    def web_users_changed(self) -> bool:
        return "web.users" in self.applied


def plan_reload(running: Settings, loaded: Settings) -> ReloadPlan:
    """The configuration to run with after reading *loaded* while *running* runs."""
    changed = changed_paths(running, loaded)
    applied = tuple(p for p in changed if _is_live(p))
    restart = tuple(p for p in changed if not _is_live(p))
    queue = loaded.numberplan.queue.model_copy(
        update={
            name.rsplit(".", 1)[1]: getattr(running.numberplan.queue, name.rsplit(".", 1)[1])
            for name in RESTART_IN_PLAN
        }
    )
    plan = loaded.numberplan.model_copy(update={"queue": queue})
    http = running.http.model_copy(update={"tokens": loaded.http.tokens})
    web = running.web.model_copy(update={"users": loaded.web.users})
    settings = running.model_copy(update={"numberplan": plan, "http": http, "web": web})
    return ReloadPlan(settings=settings, applied=applied, needs_restart=restart)


def changed_paths(old: BaseModel, new: BaseModel) -> tuple[str, ...]:
    """Dotted paths (three levels deep at most) whose values differ, in field order.

    Secrets compare by value (pydantic's ``SecretStr`` equality) and only their path is
    ever reported, never a value.
    """
    out: list[str] = []
    _diff(old, new, "", 1, out)
    return tuple(out)


def _diff(old: Any, new: Any, path: str, depth: int, out: list[str]) -> None:
    same_model = isinstance(old, BaseModel) and type(old) is type(new)
    if not same_model or depth > _LEAF_DEPTH:
        if old != new:
            out.append(path)
        return
    for name in type(old).model_fields:
        a, b = getattr(old, name), getattr(new, name)
        if a != b:
            _diff(a, b, f"{path}.{name}" if path else name, depth + 1, out)


def _is_live(path: str) -> bool:
    if any(path == r or path.startswith(r + ".") for r in RESTART_IN_PLAN):
        return False
    return any(path == p or path.startswith(p + ".") for p in LIVE)
