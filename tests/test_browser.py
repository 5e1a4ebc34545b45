"""The web page of `pixelwise serve` in a real headless Chromium, against a server started on 127.0.0.1."""

import os
import shutil
from pathlib import Path

import httpx
import pytest

from pixelwise.cli import main
from pixelwise.serve.launch import CHROMIUM_FLAGS, launch_server

# Debian's chromium; Playwright's own browser download does not work offline. `.ci/run` installs it
# and sets PIXELWISE_REQUIRE_BROWSER=1, so that in CI a missing browser fails instead of skipping.
CHROMIUM = os.environ.get("PIXELWISE_CHROMIUM", "/usr/bin/chromium")


def chromium_or_skip() -> str:
    """The Chromium executable, or a skip with the reason (a failure where the browser is required)."""
    if shutil.which(CHROMIUM):
        return CHROMIUM
    reason = f"no Chromium at {CHROMIUM}: apt-get install -y --no-install-recommends chromium"
    if os.environ.get("PIXELWISE_REQUIRE_BROWSER") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium() -> str:
    """The browser, looked for before any model is trained for it."""
    return chromium_or_skip()


@pytest.fixture(scope="module")
def server(chromium, synthetic_voc, tmp_path_factory):
    """`pixelwise serve` on a small trained model, on a free loopback port; its base URL."""
    run = tmp_path_factory.mktemp("browser") / "run"
    main(["train", "--data", str(synthetic_voc), "--epochs", "1", "--batch-size", "4", "--crop-size", "48x48",
          "--out", str(run), "--quiet", "--workers", "0"])  # fmt: skip
    process, url = launch_server(str(run / "best.pt"))
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def segment(url: str, photo: Path, output: str) -> httpx.Response:
    with open(photo, "rb") as handle:
        answer = httpx.post(f"{url}/segment?output={output}", files={"image": (photo.name, handle)}, timeout=60)
    answer.raise_for_status()
    return answer


def canvas_pixels(page) -> str:
    return page.eval_on_selector("#view", "canvas => canvas.toDataURL('image/png')")


def test_upload_overlay_legend_blur_and_download_in_chromium(chromium, server, synthetic_voc, tmp_path):
    from playwright.sync_api import sync_playwright

    photo = sorted(synthetic_voc.rglob("*.jpg"))[0]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=list(CHROMIUM_FLAGS))
        try:
            page = browser.new_page(accept_downloads=True)
            page.set_default_timeout(60_000)
            page.goto(server)
            page.wait_for_selector("body[data-state=idle]")
            assert "fcn8s" in page.inner_text("#model")

            page.set_input_files("#file", str(photo))
            page.wait_for_selector("body[data-state=ready]")
            rows = page.eval_on_selector_all(
                "#legend tbody tr", "rows => rows.map(row => [row.dataset.class, Number(row.dataset.pixels)])"
            )
            counts = segment(server, photo, "json").json()
            assert sorted(map(tuple, rows)) == sorted((entry["name"], entry["pixels"]) for entry in counts["classes"])
            shares = page.eval_on_selector_all(
                "#legend tbody tr td:last-child", "cells => cells.map(c => c.textContent)"
            )
            assert all(share.endswith("%") for share in shares)

            overlaid = canvas_pixels(page)
            page.uncheck("#legend tbody tr:first-child input[type=checkbox]")
            assert canvas_pixels(page) != overlaid, "hiding a class changes the picture"
            page.check("#legend tbody tr:first-child input[type=checkbox]")
            assert canvas_pixels(page) == overlaid
            page.fill("#opacity", "0")
            page.dispatch_event("#opacity", "input")
            plain = canvas_pixels(page)
            assert plain != overlaid, "opacity changes the picture"
            page.check("input[name=mode][value=blur]")
            page.wait_for_selector("#view[data-mode=blur]")
            assert page.inner_text("#toggle-heading") == "keep sharp"
            assert canvas_pixels(page) != plain, "background blur draws another picture than the photo"

            with page.expect_download() as download:
                page.click("#download")
            saved = tmp_path / "downloaded.png"
            download.value.save_as(saved)
            assert download.value.suggested_filename == f"{photo.stem}_mask.png"
            assert saved.read_bytes() == segment(server, photo, "mask").content, "byte for byte the API's mask"
        finally:
            browser.close()


def test_the_page_shows_the_server_refusal_of_a_non_image(chromium, server, tmp_path):
    from playwright.sync_api import sync_playwright

    not_a_photo = tmp_path / "notes.jpg"
    not_a_photo.write_text("these are words, not pixels")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=list(CHROMIUM_FLAGS))
        try:
            page = browser.new_page()
            page.set_default_timeout(60_000)
            page.goto(server)
            page.wait_for_selector("body[data-state=idle]")
            page.set_input_files("#file", str(not_a_photo))
            page.wait_for_selector("body[data-state=error]")
            assert "415" in page.inner_text("#status") and "not an image" in page.inner_text("#status")
        finally:
            browser.close()
