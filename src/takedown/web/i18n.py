"""The public pages' languages: which one a reader gets, the message catalogs, and dates
written as that reader writes them.

Which language: ``?lang=`` when it names a shipped language, else the first shipped
language in the reader's ``Accept-Language`` (q-values honoured, ``q=0`` refused), else
the deployment's default (``AppSettings.language``, or the language of its jurisdiction
profile ``AppSettings.profile``; English when neither is set). The staff console stays
English and never goes through here.

Messages are gettext catalogs: ``web/locale/<lang>/LC_MESSAGES/messages.po``, read and
compiled in memory at first use (no build step; the ``.po`` files are the source and are
the package data). ``babel.cfg`` at the repository's root says where messages are
extracted from (``pybabel extract -F babel.cfg -o src/takedown/web/locale/messages.pot .``).

Thread safety: the Jinja environment is shared by every request (and with the console),
so no translation is ever installed on it. Each render gets its own ``gettext`` and
``ngettext`` in the template context (Jinja's i18n extension resolves them from the
context first), bound to that request's catalog: two readers in two languages rendered
at once in two threads cannot see each other's language.

Example::

    reader = negotiate("ru", "en-GB,en;q=0.8", default="en")  # ?lang=ru wins
    reader.gettext("in force")      # "действует"
    reader.datetime(now)            # "10 мар. 2021 г., 09:00 UTC"
"""

from __future__ import annotations

import functools
import io
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_time, get_datetime_format
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from jinja2 import pass_context
from jinja2.runtime import Context
from markupsafe import Markup

from takedown.web.templating import utc_time

LOCALE_DIR = Path(__file__).parent / "locale"
LANGUAGES = ("en", "ru")  # shipped: a catalog each
DEFAULT_LANGUAGE = "en"
LANGUAGE_NAMES = {"en": "English", "ru": "Русский"}  # each in its own language
_TAG = re.compile(r"^[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*$|^\*$")


def shipped(language: str | None) -> str | None:
    """``language`` (any case, a region ignored: ``ru-RU``) if a catalog is shipped for it."""
    if not language:
        return None
    base = language.strip().replace("_", "-").split("-")[0].lower()
    return base if base in LANGUAGES else None


def parse_accept_language(header: str | None) -> list[str]:
    """The language tags of an ``Accept-Language`` header, most wanted first (RFC 9110:
    ``q`` from 0 to 1, default 1; ``q=0`` means "not this"; malformed entries ignored; equal
    q-values keep the header's order)."""
    if not header:
        return []
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(header[:1000].split(",")):
        tag, *params = (p.strip() for p in part.split(";"))
        if not tag or not _TAG.match(tag):
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = -1.0
        if not 0.0 < q <= 1.0:
            continue
        ranked.append((-q, position, tag))
    return [tag for _q, _pos, tag in sorted(ranked)]


@functools.lru_cache(maxsize=len(LANGUAGES))
def translations(language: str) -> Translations:
    """The catalog of a shipped ``language``, read from its ``.po`` and compiled in memory."""
    if language not in LANGUAGES:
        raise ValueError(f"no catalog for {language!r}")
    path = LOCALE_DIR / language / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as fh:
        catalog = read_po(fh, locale=language)
    buf = io.BytesIO()
    write_mo(buf, catalog, use_fuzzy=False)
    buf.seek(0)
    return Translations(fp=buf)


def _format_locale(language: str, tags: list[str]) -> Locale:
    """The reader's own variant of ``language`` for dates (``en-GB`` writes 10 Mar 2021,
    ``en-US`` Mar 10, 2021), from the first ``Accept-Language`` tag of that language."""
    for tag in tags:
        if shipped(tag) != language:
            continue
        try:
            return Locale.parse(tag.replace("-", "_"))
        except (UnknownLocaleError, ValueError):
            continue
    return Locale.parse(language)


@dataclass(frozen=True)
class Reader:
    """One reader's language: ``language`` for messages, ``locale`` for dates and numbers,
    ``chosen`` when the reader asked for it with ``?lang=`` (links then keep it)."""

    language: str
    locale: Locale
    chosen: bool = False

    @property
    def catalog(self) -> Translations:
        return translations(self.language)

    def gettext(self, message: str, **variables: Any) -> str:
        text = self.catalog.gettext(message)
        return text % variables if variables else text

    def ngettext(self, singular: str, plural: str, n: int, **variables: Any) -> str:
        text = self.catalog.ngettext(singular, plural, n)
        return text % {"num": n, **variables}

    def datetime(self, value: datetime | str | None) -> str:
        """A time in UTC, to the minute, as this reader writes it, saying UTC."""
        value = utc_time(value)
        if value is None:
            return "-"
        if isinstance(value, str):
            return value
        day = format_date(value, "medium", locale=self.locale)
        clock = format_time(value, "short", tzinfo=UTC, locale=self.locale)
        pattern = get_datetime_format("medium", locale=self.locale)
        return f"{pattern.replace('{1}', day).replace('{0}', clock)} UTC"

    def date(self, value: date | datetime | str | None) -> str:
        """A calendar date as this reader writes it (a time's date taken in UTC)."""
        if value is None or value == "":
            return "-"
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value) if "T" in value else date.fromisoformat(value)
            except ValueError:
                return value
        if isinstance(value, datetime):
            value = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).date()
        return format_date(value, "medium", locale=self.locale)

    def href(self, url: str) -> str:
        """``url`` keeping the reader's ``?lang=`` choice (other links are left as they are)."""
        if not self.chosen:
            return url
        return f"{url}{'&' if '?' in url else '?'}lang={self.language}"

    def context(self) -> dict[str, Any]:
        """What a template rendered for this reader gets: newstyle ``gettext``/``ngettext``
        bound to this reader (as ``jinja2.ext.i18n`` calls them), and the reader."""
        return {
            "gettext": _template_gettext(self),
            "ngettext": _template_ngettext(self),
            "_": _template_gettext(self),
            "lang": self.language,
            "reader": self,
            "languages": LANGUAGE_NAMES,
        }


def _template_gettext(reader: Reader) -> Any:
    @pass_context
    def gettext(__context: Context, __string: str, **variables: Any) -> str:
        text = reader.catalog.gettext(__string)
        if __context.eval_ctx.autoescape:
            text = Markup(text)
        return text % variables if variables else text

    return gettext


def _template_ngettext(reader: Reader) -> Any:
    @pass_context
    def ngettext(
        __context: Context, __singular: str, __plural: str, __num: int, **variables: Any
    ) -> str:
        variables.setdefault("num", __num)
        text = reader.catalog.ngettext(__singular, __plural, __num)
        if __context.eval_ctx.autoescape:
            text = Markup(text)
        return text % variables

    return ngettext


def negotiate(query: str | None, accept_language: str | None, default: str) -> Reader:
    """The reader's language: ``?lang=`` if shipped, else ``Accept-Language``, else
    ``default`` (itself falling back to English when not shipped)."""
    tags = parse_accept_language(accept_language)
    chosen = shipped(query)
    if chosen is not None:
        return Reader(chosen, _format_locale(chosen, tags), chosen=True)
    for tag in tags:
        if tag == "*":
            break
        language = shipped(tag)
        if language is not None:
            return Reader(language, _format_locale(language, tags))
    language = shipped(default) or DEFAULT_LANGUAGE
    return Reader(language, _format_locale(language, tags))


def reader_of(request: Any) -> Reader:
    """The reader of ``request`` (the default language: ``app.state.public_language``)."""
    default = getattr(request.app.state, "public_language", DEFAULT_LANGUAGE)
    return negotiate(
        request.query_params.get("lang"), request.headers.get("accept-language"), default
    )
