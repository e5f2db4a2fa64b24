"""The staff console at ``/console``: sessions and CSRF (``sessions``), the data each page
shows (``pages``), refusals and form fields (``http``), the routes (``routes``), the appeals
inbox (``appeals``)."""

from takedown.web.console.routes import make_router
from takedown.web.console.sessions import ConsoleSettings

__all__ = ["ConsoleSettings", "make_router"]
