"""The README's picture of `pixelwise serve`'s page: a photo segmented in headless Chromium, saved as PNG.

Starts `pixelwise serve --checkpoint CKPT` on 127.0.0.1, opens its page in Debian's chromium
through Playwright, uploads PHOTO, waits for the overlay and saves a screenshot to --out.
"""

from __future__ import annotations

import argparse

from playwright.sync_api import sync_playwright

from pixelwise.serve.launch import CHROMIUM_FLAGS, launch_server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a .pt or .onnx model")
    parser.add_argument("--photo", required=True, help="the photo to upload")
    parser.add_argument("--out", default="docs/figures/serve_page.png")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    server, url = launch_server(args.checkpoint)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium, args=list(CHROMIUM_FLAGS))
            page = browser.new_page(viewport={"width": 900, "height": 900})
            page.goto(url)
            page.wait_for_selector("body[data-state=idle]")
            page.set_input_files("#file", args.photo)
            page.wait_for_selector("body[data-state=ready]", timeout=120_000)
            page.screenshot(path=args.out, full_page=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
