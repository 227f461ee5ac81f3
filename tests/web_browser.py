"""Drive the page of `tfvae export --web` in headless Chromium, with the network closed beyond 127.0.0.1.

Used by tests/test_web.py, and as a script to refresh the screenshot in docs/export.md:

    python tests/web_browser.py OUT/web docs/web.png [--query "?seed=0"]

serves OUT/web on 127.0.0.1 (a plain static server, as `python -m http.server`),
waits for the page's data-tfvae-status, and writes a screenshot of the whole page.

Needs Debian's `chromium` and `chromium-driver` (apt-get install chromium chromium-driver)
and `selenium` (in the test extras). Selenium is told where chromedriver is: its
manager cannot download one here.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time

CHROMIUM_NAMES = ("chromium", "chromium-browser")
CHROMEDRIVER_NAMES = ("chromedriver",)
# Chromium's own traffic is turned off (it floods a closed network otherwise), and the page's is confined:
# names resolve only for 127.0.0.1 and every other connection goes to a proxy on a port where nothing listens.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--proxy-server=http://127.0.0.1:9",
    "--proxy-bypass-list=127.0.0.1",
    "--window-size=1000,1400",
)
# Schemes that never leave the browser: its own pages, inline data, blobs the page made.
LOCAL_SCHEMES = ("data:", "blob:", "chrome:", "chrome-extension:", "chrome-untrusted:", "devtools:", "about:")


def find_browser():
    """(chromium, chromedriver, None) when both are installed, else (None, None, the reason)."""
    chromium = next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)
    chromedriver = next(filter(None, map(shutil.which, CHROMEDRIVER_NAMES)), None)
    missing = [name for name, path in (("chromium", chromium), ("chromedriver", chromedriver)) if not path]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    if missing:
        return None, None, (
            f"no {' or '.join(missing)}: the browser tests need Debian's chromium and chromium-driver "
            "(apt-get install chromium chromium-driver, as .ci/run does) and pip install -e '.[test]'"
        )
    return chromium, chromedriver, None


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """The handler of `python -m http.server`, recording each request instead of printing it."""

    def __init__(self, *args, requests, **kwargs):
        self._requests = requests
        super().__init__(*args, **kwargs)

    def log_request(self, code="-", size="-"):
        self._requests.append((self.path, int(code) if str(code).isdigit() else code))

    def log_message(self, format, *args):
        pass


@contextlib.contextmanager
def serve(directory: str):
    """Serve `directory` on 127.0.0.1 (a free port) with Python's static file server; yield (base URL, requests).

    `requests` fills with (path, status) as the server answers, e.g. ("/decoder.tflite", 200).
    """
    requests = []
    handler = functools.partial(_QuietHandler, directory=directory, requests=requests)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextlib.contextmanager
def chromium(extra_flags=()):
    """A headless Chromium under Selenium, with the network closed beyond 127.0.0.1 and every request logged."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path, reason = find_browser()
    if reason:
        raise RuntimeError(reason)
    profile = tempfile.mkdtemp(prefix="tfvae-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (*CHROMIUM_FLAGS, *extra_flags, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    service = Service(executable_path=driver_path, log_output=os.devnull)
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def chromium_for_tests():
    """A test module's headless Chromium (a generator for a pytest fixture): skipped without one, failed under CI,
    which installs it in .ci/run."""
    import pytest

    _, _, reason = find_browser()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI installs chromium in .ci/run, yet: {reason}")
        pytest.skip(reason)
    with chromium() as driver:
        yield driver


def open_page(driver, url: str, timeout: float = 60.0) -> dict:
    """Load `url` and wait until the page's status is "ready" or "error"; return body's data-tfvae-* attributes.

    Returns the attributes without their prefix, e.g. {"status": "ready", "samples": "64", "mean": "0.13..."},
    and "seconds": the wall time from the navigation to that status.
    """
    start = time.monotonic()
    driver.get(url)
    return wait_for_status(driver, timeout, start)


def wait_for_status(driver, timeout: float = 60.0, start: float | None = None, until=None) -> dict:
    """Wait until data-tfvae-status is "ready" or "error" (or `until(attributes)` holds); return the attributes.

    The attributes are those of `open_page`. `until` waits for a later state, e.g. the next seed after a click.
    """
    start = time.monotonic() if start is None else start
    until = until or (lambda attributes: attributes.get("status") in ("ready", "error"))
    while True:
        attributes = driver.execute_script(
            "const out = {};"
            "for (const [key, value] of Object.entries(document.body ? document.body.dataset : {}))"
            "  if (key.startsWith('tfvae')) out[key.slice(5).replace(/^./, (c) => c.toLowerCase())] = value;"
            "return out;"
        )
        if until(attributes) or attributes.get("status") == "error":
            attributes["seconds"] = time.monotonic() - start
            return attributes
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"the page was not ready in {timeout:.0f} s: {attributes}")
        time.sleep(0.05)


def requested_urls(driver) -> list:
    """(URL, the URL of the document that asked) of every request since the last call, from the performance log."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            params = message["params"]
            urls.append((params["request"]["url"], params.get("documentURL", "")))
    return urls


# LiteRT's native log writes to stderr, which its WebAssembly build sends to console.error: every line at INFO
# or WARNING ("INFO: [environment.cc:36] Creating LiteRT environment ...") reaches the log as SEVERE. Its ERROR
# lines, and everything else at SEVERE, are errors.
_RUNTIME_LOG_LINE = re.compile(r'/litertjs/wasm/[\w.]+\.js \d+:\d+ "(INFO|WARNING): ')


def console_errors(driver) -> list:
    """The errors the page logged (console.error, uncaught exceptions, failed loads) since the last call,
    without the LiteRT runtime's INFO and WARNING log lines."""
    return [entry["message"] for entry in driver.get_log("browser")
            if entry["level"] == "SEVERE" and not _RUNTIME_LOG_LINE.search(entry["message"])]


def foreign_requests(urls, base: str) -> list:
    """The requests of `urls` that went anywhere but `base` (nor stayed in the browser: data:, blob:, chrome:)."""
    return [(url, document) for url, document in urls if not url.startswith(base) and not url.startswith(LOCAL_SCHEMES)]


def canvas_grey(driver, element_id: str):
    """A canvas's grey levels (its red channel, 0..255) as a (height, width) uint8 array, read from its pixels."""
    import numpy as np

    width, height, grey = driver.execute_script(
        """
        const canvas = document.getElementById(arguments[0]);
        const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
        const grey = new Array(data.length / 4);
        for (let i = 0; i < grey.length; i++) grey[i] = data[4 * i];
        return [canvas.width, canvas.height, grey];
        """,
        element_id,
    )
    return np.array(grey, dtype=np.uint8).reshape(height, width)


def screenshot(driver, path: str) -> None:
    """A PNG of the whole page, beyond the window's height (DevTools' Page.captureScreenshot)."""
    import base64

    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip})
    with open(path, "wb") as f:
        f.write(base64.b64decode(shot["data"]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Serve OUT/web, open it in headless Chromium, save a screenshot.")
    parser.add_argument("site", help="an OUT/web folder written by tfvae export --web")
    parser.add_argument("png", help="where the screenshot goes, e.g. docs/web.png")
    parser.add_argument("--query", default="?seed=0", help="the page's query: ?model=int8&seed=7&t=0.8")
    args = parser.parse_args(argv)
    with serve(args.site) as (base, _), chromium() as driver:
        attributes = open_page(driver, base + "index.html" + args.query)
        foreign = foreign_requests(requested_urls(driver), base)
        screenshot(driver, args.png)
    print(json.dumps(attributes, indent=2))
    if foreign:
        print(f"requests outside {base}: {foreign}", file=sys.stderr)
    return 0 if attributes["status"] == "ready" and not foreign else 1


if __name__ == "__main__":
    sys.exit(main())
