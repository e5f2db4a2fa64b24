"""The public pages on a phone: Playwright drives the installed Chromium at 390×844 (an
iPhone 12-14's viewport) over the index, a measure page, a lookup result (a host under a
throttle and a block) and the appeal form, in English and in Russian; no page scrolls
sideways. Each page is screenshotted to ``$TAKEDOWN_SCREENSHOTS`` (default: the test's
tmp path).

No browser is downloaded: without /usr/bin/chromium the test skips (fails under CI=true).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from notices.support import ServerThread

from takedown.store.db import Database
from tests.web.test_console_browser import CHROMIUM, IN_CI, LAUNCH_ARGS, PNG
from tests.web.test_public_i18n import app, setup

if not os.path.exists(CHROMIUM):  # pragma: no cover - the console's test fails under CI
    if IN_CI:
        pytest.fail(f"{CHROMIUM} is required under CI=true", pytrace=False)
    pytest.skip(f"{CHROMIUM} not installed (no browser is downloaded)", allow_module_level=True)

sync_api = pytest.importorskip("playwright.sync_api")

PHONE = {"width": 390, "height": 844}


def test_public_pages_fit_a_phone_screen(sqlite_db: Database, tmp_path: Path) -> None:
    ladder_measure, _block, throttle = setup(sqlite_db)
    shots = Path(os.environ.get("TAKEDOWN_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    paths = {
        "index": "/public/",
        "measure": f"/public/measures/{ladder_measure}",
        "lookup": "/public/lookup?host=pbs.twimg.com",
        "appeal-form": f"/public/appeals/new?measure={throttle}",
    }
    taken: list[Path] = []
    csp_errors: list[str] = []
    with ServerThread(app(sqlite_db)) as server, sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        try:
            for lang, locale in (("en", "en-GB"), ("ru", "ru-RU")):
                # the language from the browser's own Accept-Language, as a reader's phone
                context = chromium.new_context(
                    viewport=PHONE, locale=locale, device_scale_factor=1, is_mobile=True
                )
                page = context.new_page()
                page.on(
                    "console",
                    lambda m: (
                        csp_errors.append(m.text) if "Content Security Policy" in m.text else None
                    ),
                )
                for name, path in paths.items():
                    response = page.goto(server.url + path, wait_until="load")
                    assert response is not None and response.ok, (lang, path)
                    assert page.locator("html").get_attribute("lang") == lang, (lang, path)
                    widths = page.evaluate(
                        "() => [document.documentElement.scrollWidth, window.innerWidth]"
                    )
                    shot = shots / f"{lang}-{name}.png"
                    page.screenshot(path=str(shot), full_page=True)
                    taken.append(shot)
                    assert widths[1] == PHONE["width"], (lang, name, widths)
                    assert widths[0] <= widths[1], f"{lang} {name} scrolls sideways: {widths}"
                context.close()
        finally:
            chromium.close()
    assert not csp_errors, csp_errors
    assert len(taken) == 8
    for shot in taken:
        data = shot.read_bytes()
        assert data[:8] == PNG and len(data) > 5000, shot
