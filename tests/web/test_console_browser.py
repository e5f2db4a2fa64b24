"""The staff console in a real browser: Playwright drives the installed Chromium against a
real ``takedown serve`` process, set up through the CLI as staff would.

An analyst logs in and proposes a block; the approve button is absent for them and a forged
POST with their own CSRF token is refused with the four-eyes reason; a POST without a CSRF
token is 403; they log out; an approver logs in and approves; a publication carries the
block, fetched and verified through the served feed (TUF). Every page visited is
screenshotted to ``$TAKEDOWN_SCREENSHOTS`` (default: a directory under the test's tmp path).

No browser is downloaded: without /usr/bin/chromium the tests skip (fail under CI=true).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from notices.support import free_port

CHROMIUM = "/usr/bin/chromium"
IN_CI = os.environ.get("CI", "").lower() == "true"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
    "--disable-extensions",
]
PASSWORD = "correct horse battery"
PNG = b"\x89PNG\r\n\x1a\n"

if not os.path.exists(CHROMIUM):
    if IN_CI:
        pytest.fail(f"{CHROMIUM} is required under CI=true", pytrace=False)
    pytest.skip(f"{CHROMIUM} not installed (no browser is downloaded)", allow_module_level=True)

sync_api = pytest.importorskip("playwright.sync_api")


def cli(db_url: str, *args: str, stdin: str | None = None) -> str:
    """Run ``takedown`` as staff would (a real process); its stdout."""
    proc = subprocess.run(
        [sys.executable, "-c", "from takedown.cli import main; main()", "--db", db_url, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={k: v for k, v in os.environ.items() if k not in ("TAKEDOWN_TOKEN", "TAKEDOWN_CLOCK")},
    )
    assert proc.returncode == 0, f"takedown {' '.join(args)}: {proc.stderr}"
    return proc.stdout


@dataclass
class Served:
    url: str
    db_url: str
    feed: Path
    work: Path
    shots: Path
    taken: list[Path] = field(default_factory=list)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    work = tmp_path_factory.mktemp("console-browser")
    shots = Path(os.environ.get("TAKEDOWN_SCREENSHOTS") or work / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    db_url = f"sqlite:///{work / 'takedown.db'}"
    feed = work / "feed"
    cli(db_url, "init")
    cli(
        db_url,
        *("platform", "add", "twitter", "--name", "Twitter"),
        *("--host", "twitter.com=text", "--host", "*.twimg.com=media", "--host", "t.co=links"),
    )
    for n, category in enumerate(("suicide", "drugs", "csam"), start=1):
        cli(
            db_url,
            *("registry", "add", f"https://twitter.com/someone/status/{n}"),
            *("--category", category, "--basis", "149-FZ art. 15.1"),
            *("--decision", f"RKN-2021-{n}", "--platform", "twitter"),
        )
    cli(db_url, "staff", "add", "ana", "--role", "analyst", "--password-stdin", stdin=PASSWORD)
    cli(db_url, "staff", "add", "petrova", "--role", "approver", "--password-stdin", stdin=PASSWORD)
    cli(db_url, "feed", "init", str(feed))
    port = free_port()
    log = (work / "serve.log").open("wb")
    server = subprocess.Popen(
        [
            sys.executable,
            *("-c", "from takedown.cli import main; main()"),
            *("--db", db_url, "serve", "--host", "127.0.0.1", "--port", str(port)),
            *("--no-worker", "--feed-dir", str(feed), "--public-rate", "0"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, (work / "serve.log").read_text()
            assert time.monotonic() < deadline, "takedown serve did not start"
            time.sleep(0.1)
        yield Served(url, db_url, feed, work, shots)
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


@dataclass
class Browser:
    page: sync_api.Page
    served: Served
    requests: list[str] = field(default_factory=list)
    csp_errors: list[str] = field(default_factory=list)

    def shot(self, name: str) -> None:
        path = self.served.shots / f"{len(self.served.taken) + 1:02d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        self.served.taken.append(path)

    def go(self, path: str, name: str) -> None:
        response = self.page.goto(self.served.url + path, wait_until="load")
        assert response is not None and response.ok, (path, response and response.status)
        self.shot(name)

    def login(self, name: str) -> None:
        self.page.goto(self.served.url + "/console/")
        assert self.page.url.endswith("/console/login")
        self.shot(f"login-{name}")
        self.page.fill("input[name=username]", name)
        self.page.fill("input[name=password]", PASSWORD)
        self.page.click("button:has-text('Log in')")
        self.page.wait_for_load_state("load")  # the chart drawn (matplotlib, first time)
        assert self.page.url == self.served.url + "/console/", self.page.content()[:2000]
        self.shot(f"dashboard-{name}")

    def logout(self) -> None:
        self.page.click("button:has-text('Log out')")
        assert self.page.url.endswith("/console/login")

    def csrf(self) -> str:
        value = self.page.locator("input[name=csrf]").first.get_attribute("value")
        assert value
        return value


@pytest.fixture
def browser(served: Served) -> Iterator[Browser]:
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        try:
            context = chromium.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            b = Browser(page, served)
            page.on("request", lambda r: b.requests.append(r.url))
            page.on(
                "console",
                lambda m: (
                    b.csp_errors.append(m.text) if "Content Security Policy" in m.text else None
                ),
            )
            yield b
            context.close()
        finally:
            chromium.close()


def test_four_eyes_in_the_browser(browser: Browser, served: Served) -> None:
    b, page = browser, browser.page

    # the analyst: pages, then a block proposed in the browser
    b.login("ana")
    chart = page.locator("img.console-chart").first
    assert chart.evaluate("img => img.complete && img.naturalWidth > 0")
    b.go("/console/register", "register")
    assert page.locator("td.console-target").count() == 3
    page.click("a:has-text('1')")
    assert "/console/items/" in page.url
    b.shot("item")
    b.go("/console/notices", "notices")
    b.go("/console/measures", "measures")
    page.click("a:has-text('Propose a measure')")
    b.shot("propose-form")
    page.select_option("select[name=platform]", "twitter")
    page.select_option("select[name=action]", "block")
    page.fill("input[name=decision]", "RKN-2021-B1")
    page.fill("textarea[name=reason]", "items left after the deadline")
    page.click("button:has-text('Propose')")
    assert "?done=proposed" in page.url
    measure_id = int(page.url.split("/console/measures/")[1].split("?")[0])
    b.shot("measure-proposed-analyst")
    assert page.locator("form#approve").count() == 0  # no approve button for the analyst
    assert page.locator("form#reject").count() == 0
    assert "needs the approver role" in page.locator("#why-not").inner_text()
    assert "no collateral" in page.locator("#collateral").inner_text()

    # a forged POST with the analyst's own CSRF token: refused with the four-eyes reason
    forged = page.request.post(
        f"{served.url}/console/measures/{measure_id}/approve", form={"csrf": b.csrf()}
    )
    assert forged.status == 403 and "may not approve" in forged.text()
    # a form POST without a CSRF token: 403
    bare = page.request.post(
        f"{served.url}/console/measures/{measure_id}/lift", form={"decision": "RKN-L"}
    )
    assert bare.status == 403 and "CSRF" in bare.text()
    b.logout()
    b.shot("logged-out")

    # the approver approves
    b.login("petrova")
    b.go(f"/console/measures/{measure_id}", "measure-before-approval")
    assert page.locator("form#approve").count() == 1
    page.click("form#approve button")
    assert "?done=approved" in page.url
    b.shot("measure-approved")
    assert "Measure approved" in page.content()
    assert "petrova at" in page.content()
    b.go("/console/", "dashboard-block-in-force")
    assert f'href="/console/measures/{measure_id}"' in page.content()

    # published: the block is in the signed feed, fetched and verified as an operator would
    cli(served.db_url, "feed", "publish", str(served.feed), "--public-url", served.url)
    pulled = served.work / "pulled"
    root = served.feed / "metadata" / "1.root.json"
    cli(served.db_url, "feed", "pull", f"{served.url}/feed/", str(pulled), "--root", str(root))
    directives = json.loads((pulled / "directives.json").read_text())["directives"]
    [block] = [d for d in directives if d.get("measure_id") == measure_id]
    assert block["action"] == "block"
    assert {h["pattern"] for h in block["hosts"]} == {"twitter.com", "*.twimg.com", "t.co"}
    b.go(f"/public/measures/{measure_id}", "public-measure")

    # nothing came from elsewhere, and the strict CSP was never violated
    assert all(u.startswith(served.url) or u.startswith("data:") for u in b.requests), b.requests
    assert not b.csp_errors, b.csp_errors
    assert len(served.taken) >= 12
    for path in served.taken:
        data = path.read_bytes()
        assert data[:8] == PNG and len(data) > 1000, path


def test_an_appeal_from_the_public_page_reversed_by_staff(browser: Browser, served: Served) -> None:
    b, page = browser, browser.page
    recorded = cli(
        served.db_url,
        *("measures", "add", "twitter", "--action", "throttle", "--rate-kbps", "128"),
        *("--classes", "media", "--decision", "RKN-2021-T1", "--reason", "items left"),
    )
    measure_id = int(recorded.split()[1])  # "measure N recorded"
    contact = "appellant@school.example"

    # a member of the public, from the measure's page: the form, a receipt, a status page
    b.go(f"/public/measures/{measure_id}", "public-measure-in-force")
    page.click("a:has-text('Contest this measure')")
    b.shot("appeal-form")
    page.check("input[name=appellant][value=user]")
    page.fill("textarea[name=grounds]", "Our school's photo library is slowed with it.")
    page.fill("input[name=contact]", contact)
    page.click("button:has-text('File the appeal')")
    assert "Appeal filed" in page.content(), page.locator("main").inner_text()
    b.shot("appeal-filed")
    receipt = page.locator("code").first.inner_text()
    assert len(receipt) >= 20
    page.click(f"a[href$='/public/appeals/{receipt}']")
    b.shot("appeal-status-open")
    assert "open" in page.content() and contact not in page.content()

    # staff: the analyst (who did not propose the measure) reverses it in the console
    b.login("ana")
    b.go("/console/appeals?state=open", "appeals-inbox")
    page.click(f"a[href^='/console/measures/{measure_id}'] >> xpath=../../td[1]/a")
    b.shot("appeal-staff")
    assert contact in page.content()  # staff see how to reach the appellant
    page.select_option("select[name=outcome]", "reversed")
    page.fill("textarea[name=reasons]", "The throttle hits a school's library; reversed.")
    page.click("form#decide button")
    assert "?done=decided" in page.url
    b.shot("appeal-decided")
    b.go(f"/console/measures/{measure_id}", "measure-lifted-by-appeal")
    assert "lifted" in page.content()
    b.logout()

    # the public sees the outcome on the measure's page and the appellant on the status page
    b.go(f"/public/measures/{measure_id}", "public-measure-after-appeal")
    text = page.content()
    assert "1 reversed" in text and "hits a school" in text and contact not in text
    b.go(f"/public/appeals/{receipt}", "appeal-status-reversed")
    assert "reversed" in page.content() and contact not in page.content()
    listed = json.loads(cli(served.db_url, "measures", "list", "--json"))
    assert [m["state"] for m in listed if m["id"] == measure_id] == ["lifted"]
