"""The citizen's page ``GET /v/{token}`` in a real headless Chromium against a live server:
the printed QR's URL opens, shows the verdict and the live registry status, and renders at a
phone's size (the screenshot is kept for a human to look at)."""

from __future__ import annotations

import os
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from license_core.lifecycle import Action

from .test_qr import ISSUER, license_pdf, mint, printed_qr

SCREENSHOT_DIR = Path(os.environ.get("ELICENSE_SCREENSHOT_DIR", "")) if os.environ.get(
    "ELICENSE_SCREENSHOT_DIR") else None


def chromium(tool: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=390,844",
         *args],
        capture_output=True, text=True, timeout=120)


@pytest.fixture
def browser(tmp_path: Path) -> str:
    from tests.conftest import require_tool
    return require_tool("chromium")


def test_printed_qr_page_in_chromium(live_service, browser: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    container, server = live_service
    view, code = mint(container)
    url = printed_qr(license_pdf(container, view["id"]))
    assert url.startswith(server.url + "/v/")  # the QR points at the live service itself

    dom = chromium(browser, tmp_path / "profile", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert 'lang="zh-CN"' in html
    verdict = re.search(r'id="verdict">([^<]+)<', html)
    assert verdict and verdict.group(1) == "有效", html[:2000]
    status = re.search(r'id="registry-status"><span class="([^"]+)">([^<]+)<', html)
    assert status and status.group(2) == "有效" and status.group(1) == "status-valid"
    for text in ("营业执照", "深圳市市场监督管理局", view["license_number"], view["id"], "北京时间",
                 "法定代表人", "张三"):
        assert text in html, text
    assert code not in html

    shot = (SCREENSHOT_DIR or tmp_path) / "verify_page_valid.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    taken = chromium(browser, tmp_path / "profile2", f"--screenshot={shot}",
                     "--hide-scrollbars", url)
    assert taken.returncode == 0 and shot.exists(), taken.stderr[-2000:]
    with Image.open(shot) as image:
        assert image.size == (390, 844)
        # the verdict box is green near the top of the page
        green = image.convert("RGB").getpixel((195, 130))
        assert green[1] > 100 and green[0] < 60 and green[2] < 90, green

    license_service_revoke(container, view["id"])
    dom = chromium(browser, tmp_path / "profile3", "--dump-dom", url)
    html = dom.stdout
    assert re.search(r'id="verdict">已吊销<', html), html[:2000]
    assert re.search(r'id="registry-status"><span class="status-bad">已吊销<', html)
    shot = (SCREENSHOT_DIR or tmp_path) / "verify_page_revoked.png"
    assert chromium(browser, tmp_path / "profile4", f"--screenshot={shot}", "--hide-scrollbars",
                    url).returncode == 0


def license_service_revoke(container, license_id: str) -> None:  # type: ignore[no-untyped-def]
    from verify_api.services.licenses import license_service
    license_service(container).transition(license_id, Action.REVOKE, reason="revoked",
                                          note=None, principal=ISSUER)


def test_invalid_token_page_in_chromium(live_service, browser: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _container, server = live_service
    url = server.url + "/v/not-a-valid-token"
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(url, timeout=10)
    assert caught.value.code == 400
    assert caught.value.headers["content-type"].startswith("text/html")
    dom = chromium(browser, tmp_path / "profile", "--dump-dom", url)
    assert dom.returncode == 0 and re.search(r'id="verdict">无法识别<', dom.stdout), dom.stdout
    shot = (SCREENSHOT_DIR or tmp_path) / "verify_page_invalid.png"
    assert chromium(browser, tmp_path / "profile2", f"--screenshot={shot}", "--hide-scrollbars",
                    url).returncode == 0
