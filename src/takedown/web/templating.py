"""Server-rendered HTML: one Jinja2 environment (autoescaped) for the public pages and the
console, their shared static files, and the strict security headers every page carries.

Nothing on a page is fetched from elsewhere: styles and any script are files under
``web/static`` served at ``/static/``, and the CSP says so.

Example::

    return render(request, "console/dashboard.html", {"platforms": rows})
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PREFIX = "/static"

# No inline script or style, nothing from another origin, no framing.
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def utc_time(value: datetime | str | None) -> datetime | str | None:
    """A time given as a datetime or ISO 8601 text, in UTC (naive: taken as UTC); None for
    nothing; text that is no time comes back as it is, to be shown as written."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def when(value: datetime | str | None) -> str:
    """A time as people read it here: UTC, to the minute (``2021-03-10 09:00 UTC``)."""
    value = utc_time(value)
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return f"{value:%Y-%m-%d %H:%M} UTC"


def percent(value: float | None) -> str:
    """A share 0..1 as a percentage (``87.5%``)."""
    return "-" if value is None else f"{value * 100:.1f}%"


environment = Environment(
    loader=PackageLoader("takedown.web", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    extensions=["jinja2.ext.i18n"],
)
# {% trans %} and _() say English unless the render's context brings a reader's own
# gettext/ngettext (the public pages: web.i18n.Reader.context); nothing is installed per
# request on this shared environment.
environment.install_null_translations(newstyle=True)  # type: ignore[attr-defined]
environment.filters["when"] = when
environment.filters["percent"] = percent
environment.globals["static"] = STATIC_PREFIX


def render(
    request: Request | None,
    template: str,
    context: dict[str, Any],
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """Render ``template`` with ``context`` as an HTML response with the strict headers."""
    html = environment.get_template(template).render(request=request, **context)
    return HTMLResponse(html, status_code=status_code, headers={**HEADERS, **(headers or {})})
