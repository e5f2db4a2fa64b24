"""The public pages in the reader's language (English and Russian), in plain words.

The language: ``?lang=`` first, then ``Accept-Language`` (q-values), then the deployment's
default (``AppSettings.language`` or its profile's). Every message of the public templates
and of the words they use has a Russian translation (the catalog is checked against a fresh
extraction with ``babel.cfg``), and no English message is left on a Russian page. The
lookup of a host under a throttle and a block says which applies; the end date is the same
on the lookup, the measure page and the index; the JSON twins do not change with language.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from notices.support import ServerThread

from takedown import config as config_mod
from takedown.clock import SimClock
from takedown.errors import InputError
from takedown.policy import measures
from takedown.store.db import Database
from takedown.transparency import DEFAULT_APPEAL
from takedown.web import i18n
from takedown.web.app import AppSettings, build
from takedown.web.wording import Wording
from tests.web.test_public import NOW, START, setup_site
from tests.web.webapp import APPEAL, APPEAL_URL

ROOT = Path(__file__).resolve().parents[2]
LOCALE = ROOT / "src" / "takedown" / "web" / "locale"
RU_PAGE = {"Accept-Language": "ru-RU,ru;q=0.9,en;q=0.5"}


def extracted() -> dict[str, object]:
    """Every message the public pages use, extracted now as ``babel.cfg`` says."""
    with (ROOT / "babel.cfg").open() as fh:
        method_map, options_map = parse_mapping_cfg(fh)
    found: dict[str, object] = {}
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(ROOT),
        method_map,
        options_map,
        keywords={"_": None, "gettext": None, "ngettext": (1, 2), "N_": None},
    ):
        key = message[0] if isinstance(message, tuple) else message
        found[key] = message
    return found


def catalog(language: str):
    with (LOCALE / language / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        return read_po(fh, locale=language)


def test_every_message_has_a_russian_translation() -> None:
    messages = extracted()
    assert len(messages) > 150  # the templates and the words were found
    ru = catalog("ru")
    have = {(m.id[0] if isinstance(m.id, tuple) else m.id): m for m in ru if m.id}
    missing = sorted(set(messages) - set(have))
    assert not missing, f"not in ru/messages.po (run pybabel update): {missing}"
    stale = sorted(set(have) - set(messages))
    assert not stale, f"in ru/messages.po but no longer used: {stale}"
    placeholder = re.compile(r"%\((\w+)\)s")
    for key, m in have.items():
        assert not m.fuzzy, key
        strings = m.string if isinstance(m.string, tuple) else (m.string,)
        assert len(strings) == (3 if isinstance(m.id, tuple) else 1), key  # Russian plurals
        ids = m.id if isinstance(m.id, tuple) else (m.id,)
        wanted = set().union(*(placeholder.findall(i) for i in ids))
        for s in strings:
            assert s.strip(), f"untranslated: {key}"
            assert set(placeholder.findall(s)) <= wanted | {"count", "num"}, key
    english = {(m.id[0] if isinstance(m.id, tuple) else m.id) for m in catalog("en") if m.id}
    assert english == set(have)  # the English catalog lists the same messages


def test_the_default_appeal_text_is_a_message() -> None:
    ru = i18n.negotiate("ru", None, "en")
    assert Wording(ru).appeal_text(DEFAULT_APPEAL) != DEFAULT_APPEAL  # said in Russian
    assert Wording(ru).appeal_text(APPEAL) == APPEAL  # a jurisdiction's own text as written


# --- which language -----------------------------------------------------------------------


def test_accept_language_is_parsed_with_q_values() -> None:
    parse = i18n.parse_accept_language
    assert parse("fr-CH, fr;q=0.9, en;q=0.8, de;q=0.7, *;q=0.5") == [
        "fr-CH",
        "fr",
        "en",
        "de",
        "*",
    ]
    assert parse("en;q=0.3, ru") == ["ru", "en"]
    assert parse("ru;q=0, en") == ["en"]  # q=0: not this one
    assert parse("en;q=abc, ru;q=1.5, de;q=0.5") == ["de"]  # malformed q: ignored
    assert parse("<script>, ru") == ["ru"]
    assert parse(None) == [] and parse("") == []


def test_lang_wins_then_accept_language_then_the_default() -> None:
    n = i18n.negotiate
    assert n("ru", "en", "en").language == "ru" and n("ru", "en", "en").chosen
    assert n("xx", "ru", "en").language == "ru"  # an unknown ?lang= is ignored
    assert n(None, "de, ru;q=0.8, en;q=0.5", "en").language == "ru"  # the first shipped
    assert n(None, "en;q=0.2, ru;q=0.9", "en").language == "ru"
    assert n(None, "ru;q=0, en", "ru").language == "en"
    assert n(None, "de", "ru").language == "ru"  # nothing shipped asked for: the default
    assert n(None, "*", "ru").language == "ru"
    assert n(None, None, "de").language == "en"  # no catalog for de yet: English
    # dates in the reader's own variant of the language
    gb = n(None, "en-GB,en;q=0.8", "ru")
    assert gb.language == "en" and gb.datetime("2021-03-10T09:05:07.123456+00:00") == (
        "10 Mar 2021, 09:05 UTC"
    )
    ru = n("ru", None, "en")
    assert ru.datetime("2021-03-10T09:05:07.123456+00:00") == "10 мар. 2021\u202fг., 09:05 UTC"
    assert ru.date("2021-03-01") == "1 мар. 2021\u202fг."


def test_profiles_carry_their_language() -> None:
    cfg = config_mod.default()
    assert cfg.profile("ru-2021").language == "ru"
    assert cfg.profile("eu-tco").language == "en"
    assert cfg.profile("de-netzdg").language == "de"
    assert cfg.category_name("csam", "ru") == "Материалы сексуального насилия над детьми"
    assert cfg.category_name("csam", "de") == "Child sexual abuse material"  # no German yet
    with pytest.raises(InputError):
        config_mod.build({"profiles": {"x": {"language": "Russian"}}}, "test")
    with pytest.raises(InputError):
        config_mod.build({"category_names": {"ru": {"nope": "x"}}}, "test")


def test_app_default_language() -> None:
    db, clock = None, SimClock(NOW)
    assert AppSettings(db=db, clock=clock).public_language() == "en"  # type: ignore[arg-type]
    s = AppSettings(db=db, clock=clock, profile="ru-2021")  # type: ignore[arg-type]
    assert s.public_language() == "ru"
    s = AppSettings(db=db, clock=clock, profile="ru-2021", language="en")  # type: ignore[arg-type]
    assert s.public_language() == "en"
    with pytest.raises(InputError):
        AppSettings(db=db, clock=clock, profile="nowhere").public_language()  # type: ignore[arg-type]
    with pytest.raises(InputError):
        AppSettings(db=db, clock=clock, language="Russian").public_language()  # type: ignore[arg-type]
    de = AppSettings(db=db, clock=clock, language="de")  # type: ignore[arg-type]
    assert de.public_language() == "de"  # pages fall back to English until de is shipped


# --- the pages ----------------------------------------------------------------------------


@dataclass
class Site:
    db: Database
    client: httpx.Client
    ladder_measure: int  # stubborn.example, throttled by the ladder, review 15 April
    block: int  # twitter, blocked by decision, no end date
    throttle: int  # twitter's media, throttled by decision until 1 May


def app(db: Database, **settings: object):
    return build(
        AppSettings(
            db=db,
            clock=SimClock(NOW),
            appeal_text=APPEAL,
            appeal_url=APPEAL_URL,
            **settings,  # type: ignore[arg-type]
        )
    )


def setup(db: Database) -> tuple[int, int, int]:
    ladder_measure, block, _pending = setup_site(db)
    throttle = measures.add(
        db,
        "twitter",
        action="throttle",
        rate_kbps=128,
        classes=["media"],
        scope={"mobile": 100, "fixed": 50},
        decision="RKN-T-1",
        reason="RKN-T-1 stands: items remain",
        now=START,
        actor="alice",
        expires=START + timedelta(days=52),
    )
    return ladder_measure, block, throttle


@pytest.fixture
def site(db: Database) -> Iterator[Site]:
    ids = setup(db)
    with (
        ServerThread(app(db)) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        yield Site(db, client, *ids)


def text_of(page: str) -> str:
    """What a reader sees: the page without tags, unescaped, spaces collapsed."""
    body = page.split("<body", 1)[1]
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())


def english_left(page: str) -> list[str]:
    """English messages (their fixed words) still on a page meant to be Russian."""
    ru = {(m.id[0] if isinstance(m.id, tuple) else m.id): m for m in catalog("ru") if m.id}
    seen = text_of(page)
    left = []
    for key, m in ru.items():
        ids = m.id if isinstance(m.id, tuple) else (m.id,)
        for msgid in ids:
            for piece in re.split(r"%\(\w+\)s", msgid):
                piece = piece.strip(" .,:;()“”")
                if len(piece) < 6 or not re.search(r"[A-Za-z]{4}", piece):
                    continue
                if re.search(rf"(?<![\w.-]){re.escape(piece)}(?![\w.-])", seen):
                    left.append(f"{piece!r} (from {key!r})")
    return left


def pages(site: Site) -> dict[str, str]:
    return {
        "index": "/public/",
        "measure": f"/public/measures/{site.ladder_measure}",
        "block": f"/public/measures/{site.block}",
        "lookup": "/public/lookup?host=pbs.twimg.com",
        "lookup-none": "/public/lookup?host=example.org",
        "register": "/public/lookup?host=blocked-casino.example",
        "decision": "/public/lookup?decision=RKN-REG-1",
        "lookup-form": "/public/lookup",
        "appeal-form": f"/public/appeals/new?measure={site.throttle}",
    }


def with_lang(path: str, lang: str) -> str:
    return f"{path}{'&' if '?' in path else '?'}lang={lang}"


RUSSIAN = {
    "index": "Действующие сетевые меры",
    "measure": "замедление до 128 кбит/с",
    "block": "срок окончания не установлен",
    "lookup": "Что сейчас применяется к pbs.twimg.com",
    "lookup-none": "Сейчас ни одна действующая мера не касается example.org",
    "register": "Решение реестра RKN-REG-1",
    "decision": "Незаконные азартные игры",
    "lookup-form": "Имя сайта или адрес",
    "appeal-form": "Подать жалобу",
}


def test_every_page_in_english_and_in_russian(site: Site) -> None:
    for name, path in pages(site).items():
        en = site.client.get(with_lang(path, "en"))
        ru = site.client.get(with_lang(path, "ru"))
        assert en.status_code == ru.status_code == 200, (name, en.text[:500])
        assert '<html lang="en">' in en.text and '<html lang="ru">' in ru.text, name
        assert en.headers["content-language"] == "en" and ru.headers["content-language"] == "ru"
        assert "accept-language" in ru.headers["vary"].lower()
        assert RUSSIAN[name] in html.unescape(ru.text), name
        assert not re.search("[а-яА-Я]", text_of(en.text).replace("Русский", "")), name
        assert english_left(ru.text) == [], name
        # no internal field names, no microseconds or ISO times on any page
        for page in (en.text, ru.text):
            seen = text_of(page)
            for jargon in ("removed_share", "scope_percent", "Scope *", "directive", "+00:00"):
                assert jargon not in seen, (name, jargon)
            assert not re.search(r"\d\d:\d\d:\d\d", seen), name


def test_accept_language_and_the_profile_default(db: Database) -> None:
    setup(db)
    with (
        ServerThread(app(db)) as english_site,
        ServerThread(app(db, profile="ru-2021")) as russian_site,
        httpx.Client(timeout=30) as c,
    ):
        page = c.get(f"{english_site.url}/public/", headers=RU_PAGE)
        assert '<html lang="ru">' in page.text and "Действующие сетевые меры" in page.text
        page = c.get(f"{english_site.url}/public/", headers={"Accept-Language": "ru;q=0, en"})
        assert "Network measures in force" in page.text
        assert "Network measures in force" in c.get(f"{english_site.url}/public/").text
        # a Russian deployment: Russian by default, English when asked for
        assert "Действующие сетевые меры" in c.get(f"{russian_site.url}/public/").text
        page = c.get(f"{russian_site.url}/public/", headers={"Accept-Language": "en-GB"})
        assert "Network measures in force" in page.text and "10 Mar 2021" in page.text
        page = c.get(f"{russian_site.url}/public/?lang=en", headers=RU_PAGE)
        assert "Network measures in force" in page.text
        # links keep a language chosen with ?lang=; a switch to the other one on every page
        page = c.get(f"{russian_site.url}/public/?lang=en").text
        assert 'href="/public/lookup?lang=en"' in page
        assert 'hreflang="ru" href="/public/?lang=ru"' in page
        # the staff console stays English
        login = c.get(f"{russian_site.url}/console/login", headers=RU_PAGE)
        assert login.status_code == 200 and not re.search("[а-яА-Я]", login.text)


def until(page: str) -> str:
    [cell] = re.findall(r"<th>(?:How long|Срок действия)</th><td>(.*?)</td>", page)
    return cell


def test_lookup_says_which_measure_applies_and_until_when(site: Site) -> None:
    doc = site.client.get("/public/lookup?host=pbs.twimg.com&format=json").json()
    by_measure = {d["measure_id"]: d for d in doc["directives"]}
    assert by_measure[site.block]["applies"] and not by_measure[site.throttle]["applies"]
    page = site.client.get("/public/lookup?host=pbs.twimg.com&lang=en").text
    seen = text_of(page)
    assert (
        f"What applies to pbs.twimg.com now: Measure No. {site.block}, blocked for all subscribers."
        in seen
    )
    assert "2 measures in force cover this site." in seen
    assert "a block before a slowdown" in seen
    assert (
        f"No: Measure No. {site.block} is stricter and is applied instead, wherever both reach "
        "the same subscribers." in seen
    )
    assert "Yes: this is the measure the network applies now." in seen
    # how to contest each, from where the blocked user landed
    page = site.client.get("/public/lookup?host=pbs.twimg.com").text
    for mid in (site.block, site.throttle):
        assert f'/public/appeals/new?measure={mid}">Contest this measure</a>' in page
    ru = text_of(site.client.get("/public/lookup?host=pbs.twimg.com&lang=ru").text)
    assert f"Что сейчас применяется к pbs.twimg.com: Мера № {site.block}, блокировка" in ru
    assert "Этот сайт затрагивают 2 действующие меры." in ru
    assert f"Нет: Мера № {site.block} строже" in ru
    # a register decision has no form: the jurisdiction's own text says how to contest it
    register = text_of(site.client.get("/public/lookup?host=blocked-casino.example").text)
    assert f"How to contest it: {APPEAL} {APPEAL_URL}" in register


def test_the_end_date_is_the_same_on_every_page(site: Site) -> None:
    for lang, expected in (
        ("en", {"ladder": "until Apr 15, 2021", "block": "no end date set; in force until"}),
        ("ru", {"ladder": "до 15 апр. 2021\u202fг.", "block": "срок окончания не установлен"}),
    ):
        for key, mid, host in (
            ("ladder", site.ladder_measure, "stubborn.example"),
            ("block", site.block, "t.co"),
        ):
            measure_page = site.client.get(f"/public/measures/{mid}?lang={lang}").text
            lookup_page = site.client.get(f"/public/lookup?host={host}&lang={lang}").text
            assert until(measure_page) == until(lookup_page), (lang, key)
            assert expected[key] in html.unescape(until(measure_page)), (lang, key)
            index = site.client.get(f"/public/?lang={lang}").text
            assert until(measure_page) in index
    # not the feed's rolling expiry, which the JSON still carries as the directive's
    doc = site.client.get("/public/lookup?host=t.co&format=json").json()
    [d] = doc["directives"]
    assert d["expires"] is not None and d["why"]["expires_at"] is None


def test_json_twins_do_not_change_with_language(site: Site) -> None:
    for name, path in pages(site).items():
        if name in ("lookup-form", "appeal-form"):
            continue
        plain = site.client.get(path, params={"format": "json"} if "?" not in path else None)
        if "?" in path:
            plain = site.client.get(f"{path}&format=json")
            ru = site.client.get(f"{path}&format=json&lang=ru", headers=RU_PAGE)
        else:
            ru = site.client.get(f"{path}?format=json&lang=ru", headers=RU_PAGE)
        assert plain.status_code == 200 and plain.json() == ru.json(), name
    index = site.client.get("/public/?format=json").json()
    assert set(index) == {"as_of", "measures_in_force", "register_decisions", "audit_head"}
    lookup = site.client.get("/public/lookup?host=t.co&format=json").json()
    assert set(lookup) == {"as_of", "query", "restricted", "directives"}
    [d] = lookup["directives"]
    assert {"id", "action", "describe", "scope_percent", "expires", "applies"} <= set(d)
    assert d["describe"] == "block"  # the codes stay codes in JSON


def test_an_appeal_filed_in_russian(site: Site) -> None:
    r = site.client.post(
        "/public/appeals?lang=ru",
        data={"measure_id": str(site.throttle), "appellant": "user", "grounds": "Школа"},
    )
    assert r.status_code == 201
    seen = text_of(r.text)
    assert f"Ваша жалоба (Мера № {site.throttle}) подана." in seen
    status_url = re.search(r'href="([^"]+/public/appeals/[^"?]+)\?lang=ru"', r.text)
    assert status_url, r.text
    status = site.client.get(status_url[1], headers=RU_PAGE)
    assert "на рассмотрении" in status.text and english_left(status.text) == []
    assert "пользователь платформы" in status.text
    bad = site.client.post(
        "/public/appeals?lang=ru",
        data={"measure_id": str(site.throttle), "appellant": "user", "grounds": " "},
    )
    assert bad.status_code == 422 and "Ваши доводы:" in html.unescape(bad.text)
