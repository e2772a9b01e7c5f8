"""Logging people in to the browser pages: the login page, the session cookie, CSRF.

* ``GET /login`` the form, ``POST /login`` checks it (:class:`~cti.adapters.http.sessions.
  SessionTable`: argon2, the lockout), ``POST /logout`` ends the session.
* The session cookie ``cti_session`` is ``HttpOnly`` (no script reads it), ``SameSite=Strict``
  (a cross-site page's request carries no session at all), ``Path=/`` and ``Secure`` when
  the daemon serves TLS (``http.tls``).
* Every state-changing request (POST) under a session needs the session's CSRF token in the
  ``X-CSRF-Token`` header (the pages' script sends it) or a ``csrf`` form field (the logout
  form), and a same-origin ``Origin`` when the browser sends one: SameSite alone leaves
  same-site sibling hosts and old browsers. The login form has its own CSRF cookie (a
  double-submit token), so a forged login (login CSRF) is refused too.

Pages answer a missing session with a redirect to ``/login``; the JSON and stream endpoints
with 401 (:func:`require_session`).
"""

from __future__ import annotations

import hmac
import secrets
from typing import Final
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from structlog.typing import FilteringBoundLogger

from cti.adapters.http.edge import client_address
from cti.adapters.http.errors import ApiError
from cti.adapters.http.sessions import LoginRefused, Session, SessionTable

__all__ = [
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "WebContext",
    "home_of",
    "require_page_session",
    "require_session",
    "web_auth_router",
]

SESSION_COOKIE: Final = "cti_session"
LOGIN_CSRF_COOKIE: Final = "cti_login_csrf"
CSRF_HEADER: Final = "X-CSRF-Token"
_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_HOME: Final = {"agent": "/console", "supervisor": "/board", "admin": "/board"}
_SECURITY_HEADERS: Final = {
    # every asset is the daemon's own (no CDN: the centre has no internet); no framing
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    # not no-referrer: with it Chromium sends `Origin: null` on the pages' own form posts,
    # which the Origin check must refuse; same-origin still tells other sites nothing
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def home_of(role: str) -> str:
    """Where a role's login lands: an agent's console, the others' board."""
    return _HOME.get(role, "/console")


class WebContext:
    """What the web routes share: the sessions, the templates, TLS or not, the logger."""

    def __init__(
        self,
        sessions: SessionTable,
        templates: Jinja2Templates,
        *,
        secure: bool,
        log: FilteringBoundLogger,
    ) -> None:
        self.sessions = sessions
        self.templates = templates
        self.secure = secure
        self.log = log

    def page(self, request: Request, name: str, context: dict[str, object]) -> HTMLResponse:
        resp = self.templates.TemplateResponse(request, name, context)
        resp.headers.update(_SECURITY_HEADERS)
        return resp


def _ctx(request: Request) -> WebContext:
    ctx: WebContext = request.app.state.cti_web
    return ctx


def _same_origin(request: Request) -> bool:
    """No ``Origin`` (older browsers, same-origin GET-turned-POST) passes: the CSRF token is
    the check then. A present one must be this server's own."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    parts = urlsplit(origin)
    return parts.netloc == host and parts.scheme in ("http", "https")


def _session_of(request: Request) -> Session | None:
    return _ctx(request).sessions.get(request.cookies.get(SESSION_COOKIE))


def _check_csrf(request: Request, sess: Session, form_token: str | None = None) -> None:
    ctx = _ctx(request)
    presented = request.headers.get(CSRF_HEADER) or form_token
    if not _same_origin(request) or not ctx.sessions.csrf_ok(sess, presented):
        ctx.log.warning(
            "web_csrf_refused",
            user=sess.user.name,
            path=request.url.path,
            client=client_address(request.scope),
            origin=request.headers.get("origin"),
        )
        raise ApiError(403, "csrf", "missing or wrong CSRF token, or a cross-site request")


async def require_session(request: Request) -> Session:
    """A FastAPI dependency for the JSON and stream endpoints: the request's session (401
    without one); a state-changing request also needs the CSRF token (403)."""
    sess = _session_of(request)
    if sess is None:
        raise ApiError(401, "no_session", "log in first (/login)")
    if request.method not in _SAFE_METHODS:
        _check_csrf(request, sess)
    request.state.principal = f"web:{sess.user.name}"
    return sess


class _LoginRedirect(Exception):  # noqa: N818 - control flow, handled below
    pass


async def require_page_session(request: Request) -> Session:
    """A FastAPI dependency for pages: the session, or a redirect to ``/login``."""
    sess = _session_of(request)
    if sess is None:
        raise _LoginRedirect
    request.state.principal = f"web:{sess.user.name}"
    return sess


def install_login_redirect(app: object) -> None:
    from fastapi import FastAPI  # noqa: PLC0415 - only for the isinstance narrowing

    if not isinstance(app, FastAPI):
        return

    async def to_login(_request: Request, _exc: Exception) -> Response:
        return RedirectResponse("/login", status_code=303)

    app.add_exception_handler(_LoginRedirect, to_login)


def _set_cookie(ctx: WebContext, resp: Response, name: str, value: str, max_age: int) -> None:
    resp.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        secure=ctx.secure,
        httponly=True,
        samesite="strict",
    )


def web_auth_router() -> APIRouter:
    """``/login`` (GET the form, POST it) and ``/logout`` (POST)."""
    router = APIRouter(include_in_schema=False)

    @router.get("/login")
    async def login_form(request: Request) -> HTMLResponse:
        ctx = _ctx(request)
        token = secrets.token_urlsafe(32)
        resp = ctx.page(request, "login.html", {"csrf": token, "error": None})
        _set_cookie(ctx, resp, LOGIN_CSRF_COOKIE, token, 600)
        return resp

    @router.post("/login", response_model=None)
    async def login(request: Request) -> Response:
        ctx = _ctx(request)
        form = await _form(request)
        username, password, csrf = form["username"], form["password"], form["csrf"]
        cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        client = client_address(request.scope)
        if not (
            cookie
            and csrf
            and hmac.compare_digest(cookie.encode(), csrf.encode())
            and _same_origin(request)
        ):
            ctx.log.warning("web_login_csrf_refused", client=client)
            return _login_again(ctx, request, "登录页已过期 请重新登录", 403)
        try:
            sid, sess = ctx.sessions.login(username, password)
        except LoginRefused as refused:
            ctx.log.warning(
                "web_login_failed", user=username[:64], locked=refused.locked, client=client
            )
            if refused.locked:
                minutes = max(1, round(refused.retry_after_s / 60))
                return _login_again(
                    ctx, request, f"失败次数过多 账号已锁定 请 {minutes} 分钟后再试", 429
                )
            return _login_again(ctx, request, "用户名或密码错误", 401)
        ctx.log.info(
            "web_login", user=sess.user.name, role=sess.user.role, seat=sess.user.seat,
            client=client,
        )  # fmt: skip
        resp = RedirectResponse(_HOME[sess.user.role], status_code=303)
        _set_cookie(ctx, resp, SESSION_COOKIE, sid, int(ctx.sessions.settings.session_ttl_s))
        resp.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
        return resp

    @router.post("/logout", response_model=None)
    async def logout(request: Request) -> Response:
        ctx = _ctx(request)
        sess = _session_of(request)
        if sess is not None:
            _check_csrf(request, sess, (await _form(request))["csrf"])
            ctx.sessions.logout(request.cookies.get(SESSION_COOKIE))
            ctx.log.info("web_logout", user=sess.user.name)
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(SESSION_COOKIE, path="/")
        return resp

    return router


# the longest each field may be (a length, not a password)
_FORM_FIELDS: Final = {"username": 64, "password": 256, "csrf": 128}  # nosec B105


async def _form(request: Request) -> dict[str, str]:
    """The login and logout forms' fields (urlencoded; the body is already bounded by the
    edge's http.max_body_bytes): each field once at most, longer than its limit = empty,
    an unknown field ignored. No multipart parser for three short fields."""
    fields = dict.fromkeys(_FORM_FIELDS, "")
    if request.headers.get("content-type", "").split(";")[0].strip() != (
        "application/x-www-form-urlencoded"
    ):
        return fields
    try:
        text = (await request.body()).decode("utf-8")
        parsed = parse_qs(text, keep_blank_values=True, max_num_fields=10, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        return fields
    for name, limit in _FORM_FIELDS.items():
        values = parsed.get(name, [])
        if len(values) == 1 and len(values[0]) <= limit:
            fields[name] = values[0]
    return fields


def _login_again(ctx: WebContext, request: Request, error: str, status: int) -> HTMLResponse:
    token = secrets.token_urlsafe(32)
    resp = ctx.page(request, "login.html", {"csrf": token, "error": error})
    resp.status_code = status
    _set_cookie(ctx, resp, LOGIN_CSRF_COOKIE, token, 600)
    return resp
