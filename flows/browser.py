"""The HTML report in a real browser: headless Chromium renders it, reports console errors and whether every figure
decoded, and takes a screenshot that the flow logs as an MLflow artifact of the report stage.

Chromium is Debian's `chromium` package (`apt-get install -y chromium`); when it is missing the flow logs a warning
and goes on, since the report itself is complete without a screenshot. Chromium runs with every network feature off
(no background networking, no component updates, no sync), and the report is self-contained, so nothing leaves the
machine.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WINDOW = (1280, 2000)
CONSOLE_LINE = re.compile(r":CONSOLE[:(]")  # Chromium's --enable-logging line for a page's console message
CONSOLE_ERROR = re.compile(r"(ERROR:CONSOLE|Uncaught|Error\b)")
# Put first in a copy of the page: collect console.error calls and uncaught errors (including a figure that fails to
# load); after load, write them and each <img>'s decoded width (0 = broken) and each canvas's size into an attribute
# that --dump-dom prints.
CAPTURE = """<script>
window.__rarlErrors = [];
(function () {
  var original = console.error;
  console.error = function () {
    window.__rarlErrors.push('console.error: ' + Array.prototype.join.call(arguments, ' '));
    return original.apply(console, arguments);
  };
  window.addEventListener('error', function (ev) {
    var what = ev.target && ev.target !== window && ev.target.tagName ? ev.target.tagName + ' failed to load'
                                                                        : 'Uncaught ' + ev.message;
    window.__rarlErrors.push(what);
  }, true);
})();
</script>"""
PROBE = """<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.map.call(document.images, function (i) {
    return {alt: i.alt || '', width: i.naturalWidth, height: i.naturalHeight, complete: i.complete};
  });
  var canvases = Array.prototype.map.call(document.getElementsByTagName('canvas'), function (c) {
    return {width: c.width, height: c.height};
  });
  document.documentElement.setAttribute('data-rarl-probe',
    JSON.stringify({images: imgs, canvases: canvases, errors: window.__rarlErrors}));
});
</script>"""


def instrument(html: str) -> str:
    """The page with CAPTURE first (before any of its own scripts) and PROBE last."""
    head = re.search(r"<head[^>]*>", html, re.IGNORECASE)
    html = html[: head.end()] + CAPTURE + html[head.end():] if head else CAPTURE + html
    return html.replace("</body>", PROBE + "</body>") if "</body>" in html else html + PROBE


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        if path := shutil.which(name):
            return path
    return None


def _base_args(chromium: str, profile: Path) -> list[str]:
    return [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
        "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
        f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}",
    ]


@dataclass
class BrowserCheck:
    """What Chromium saw: the screenshot, console errors, and each figure's decoded size."""

    screenshot: Path
    console_errors: list[str] = field(default_factory=list)
    images: list[dict] = field(default_factory=list)
    canvases: list[dict] = field(default_factory=list)

    @property
    def broken_images(self) -> list[dict]:
        return [i for i in self.images if not i.get("width")]

    @property
    def ok(self) -> bool:
        return not self.console_errors and not self.broken_images and bool(self.images or self.canvases)


def check_report(html: Path, screenshot: Path, wait_s: float = 120.0, chromium: str | None = None) -> BrowserCheck:
    """Open `html` in headless Chromium twice: once for a PNG screenshot (with console logging on stderr), once
    with a probe script for the figures. Raises FileNotFoundError when no Chromium is installed."""
    chromium = chromium or find_chromium()
    if not chromium:
        raise FileNotFoundError("no Chromium found (apt-get install -y chromium)")
    html = Path(html).resolve()
    screenshot = Path(screenshot).resolve()
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rarl-chromium-") as tmp:
        tmp_path = Path(tmp)
        shot = subprocess.run(
            [*_base_args(chromium, tmp_path / "profile-shot"), "--enable-logging=stderr", "--v=0",
             "--virtual-time-budget=5000", f"--screenshot={screenshot}", html.as_uri()],
            capture_output=True, text=True, timeout=wait_s, errors="replace",
        )
        if not screenshot.is_file():
            raise RuntimeError(f"chromium wrote no screenshot (exit {shot.returncode}): {shot.stderr[-800:]}")
        errors = [line.strip() for line in shot.stderr.splitlines()
                  if CONSOLE_LINE.search(line) and CONSOLE_ERROR.search(line)]
        probe_page = tmp_path / html.name
        probe_page.write_text(instrument(html.read_text(encoding="utf-8")), encoding="utf-8")
        dom = subprocess.run(
            [*_base_args(chromium, tmp_path / "profile-dom"), "--virtual-time-budget=5000", "--dump-dom",
             probe_page.as_uri()],
            capture_output=True, text=True, timeout=wait_s, errors="replace",
        )
    match = re.search(r'data-rarl-probe="([^"]*)"', dom.stdout)
    probe = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&")) if match else {}
    if not match:
        errors.append(f"the page did not finish loading in Chromium (no probe result; exit {dom.returncode})")
    errors += [e for e in probe.get("errors", []) if e not in errors]
    return BrowserCheck(screenshot, errors, probe.get("images", []), probe.get("canvases", []))


def png_is_blank(path: Path) -> bool:
    """True when the screenshot is one flat colour (nothing rendered)."""
    from PIL import Image

    with Image.open(path) as image:
        extrema = image.convert("L").getextrema()
    return extrema[0] == extrema[1]
