"""Django's admin end to end through hybrid: log in with CSRF, change an object.

Once with an HTTP client against one worker's application, once in headless Chromium
(Debian's ``chromium`` and ``chromium-driver``, driven by selenium) against the real
``hybrid serve``.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlencode

import pytest
from conftest import HybridProcess, missing_dependency
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from hybrid import Config, make_app
from hybrid.web import HybridApplication

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture
def app(http_port: int) -> HybridApplication:
    return make_app(Config(db_threads=2), http_port)


@pytest.fixture
def admin_user() -> tuple[str, str]:
    from django.contrib.auth.models import User

    name = f"admin{uuid.uuid4().hex[:8]}"
    User.objects.create_superuser(name, password="s3cret-pw")
    return name, "s3cret-pw"


@pytest.fixture
def item() -> Any:
    from shop.models import Item

    return Item.objects.create(name="before", qty=1)


class Browser:
    """Just enough of a cookie-keeping HTTP client."""

    def __init__(self, client: AsyncHTTPClient, base_url: str) -> None:
        self.client, self.base_url = client, base_url
        self.cookies: dict[str, str] = {}

    async def request(self, path: str, form: dict[str, str] | None = None) -> HTTPResponse:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        kwargs: dict[str, Any] = {}
        if form is not None:
            kwargs = {"method": "POST", "body": urlencode(form)}
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            headers["Referer"] = self.base_url + path
        response = await self.client.fetch(
            self.base_url + path,
            headers=headers,
            follow_redirects=False,
            raise_error=False,
            **kwargs,
        )
        for header in response.headers.get_list("Set-Cookie"):
            jar: SimpleCookie = SimpleCookie(header)
            for key, morsel in jar.items():
                self.cookies[key] = morsel.value
        return response


def csrf_token(page: HTTPResponse) -> str:
    match = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.body)
    assert match, page.body[:500]
    return match.group(1).decode()


@pytest.mark.gen_test(timeout=20)
async def test_admin_login_and_change_with_an_http_client(
    http_client: AsyncHTTPClient, base_url: str, admin_user: tuple[str, str], item: Any
) -> None:
    from shop.models import Item

    browser = Browser(http_client, base_url)
    login_page = await browser.request("/admin/login/?next=/admin/")
    assert "csrftoken" in browser.cookies
    refused = await browser.request(
        "/admin/login/", {"username": admin_user[0], "password": admin_user[1]}
    )
    assert refused.code == 403  # no CSRF token in the form
    name, password = admin_user
    logged_in = await browser.request(
        "/admin/login/?next=/admin/",
        {
            "csrfmiddlewaretoken": csrf_token(login_page),
            "username": name,
            "password": password,
            "next": "/admin/",
        },
    )
    assert logged_in.code == 302, logged_in.body[:500]
    assert logged_in.headers["Location"] == "/admin/"
    assert "sessionid" in browser.cookies
    index = await browser.request("/admin/")
    assert b"Site administration" in index.body

    change_url = f"/admin/shop/item/{item.pk}/change/"
    form = await browser.request(change_url)
    assert form.code == 200
    saved = await browser.request(
        change_url,
        {"csrfmiddlewaretoken": csrf_token(form), "name": "after", "qty": "7", "_save": "Save"},
    )
    assert saved.code == 302, saved.body[:800]
    assert saved.headers["Location"] == "/admin/shop/item/"
    changed = await Item.objects.aget(pk=item.pk)
    assert (changed.name, changed.qty) == ("after", 7)
    listing = await browser.request("/admin/shop/item/")
    assert b"was changed successfully" in listing.body  # the messages framework, via cookies


@contextmanager
def start_chromium() -> Iterator[Any]:
    """A headless Chromium driven by selenium, with a fresh profile; quit afterwards."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing_dependency("selenium (pip, the test extra)")
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        missing_dependency("Chromium (Debian packages chromium and chromium-driver)")
    profile = tempfile.mkdtemp(prefix="hybrid-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    try:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    except BaseException:
        shutil.rmtree(profile, ignore_errors=True)
        raise
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def chromium() -> Iterator[Any]:
    """A headless Chromium (:func:`start_chromium`); a test that needs a second browser
    takes this fixture and starts the second with ``start_chromium()``."""
    with start_chromium() as driver:
        yield driver


def test_admin_login_and_change_in_headless_chromium(
    chromium: Any,
    hybrid_serve: Callable[..., HybridProcess],
    free_ports: Callable[[int], list[int]],
    admin_user: tuple[str, str],
    item: Any,
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait
    from shop.models import Item

    server = hybrid_serve(ports=free_ports(1))
    base = server.url(server.ports[0], "")
    wait = WebDriverWait(chromium, 20)
    chromium.get(base + "/admin/login/?next=/admin/")
    chromium.find_element(By.NAME, "username").send_keys(admin_user[0])
    chromium.find_element(By.NAME, "password").send_keys(admin_user[1])
    chromium.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait.until(expected_conditions.title_contains("Site administration"))

    chromium.get(f"{base}/admin/shop/item/{item.pk}/change/")
    name = chromium.find_element(By.NAME, "name")
    name.clear()
    name.send_keys("from chromium")
    chromium.find_element(By.NAME, "_save").click()
    wait.until(expected_conditions.url_to_be(base + "/admin/shop/item/"))
    assert "was changed successfully" in chromium.page_source
    assert Item.objects.get(pk=item.pk).name == "from chromium"
