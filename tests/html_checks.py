"""Checks for the HTML reports: valid HTML5 (html5lib, strict), and a real render in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import html5lib
import numpy as np
from PIL import Image

HEADLESS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
SCREEN = (1280, 2000)  # the screenshot's width and height in pixels
# A page renders as itself when at least this share of its screenshot's pixels differs clearly from the
# screenshot of the same bytes shown as plain text, as Chromium shows a page it does not take for HTML.
MIN_CHANGED_PIXELS = 0.02

# Set on load: each image's natural width, 0 for one that did not load.
IMAGE_PROBE = ('<script>window.addEventListener("load", () => { document.body.dataset.images = '
               'Array.from(document.images).map(i => i.complete && i.naturalWidth > 0 ? i.naturalWidth : 0)'
               '.join(","); });</script>')


def assert_valid_html(text: str) -> None:
    """Parse as HTML5 with html5lib in strict mode: any parse error (a stray or unclosed tag, a bad
    attribute, a missing doctype) raises."""
    html5lib.HTMLParser(strict=True).parse(text)


def loaded_image_widths(chromium: str, page: Path, tmp_path: Path) -> list[int]:
    """Open a copy of `page` in headless Chromium; return its images' natural widths once loaded."""
    probe = tmp_path / f"probe-{page.name}.html"
    probe.write_text(page.read_text().replace("</body>", IMAGE_PROBE + "</body>"))
    dom = subprocess.run(
        [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000", "--dump-dom",
         probe.as_uri()], capture_output=True, text=True, timeout=120, check=True).stdout
    found = re.search(r'data-images="([\d,]*)"', dom)
    assert found, f"Chromium did not finish loading {page}: {dom[:500]}"
    return [int(width) for width in found.group(1).split(",") if width]


def screenshot(chromium: str, page: Path, image: Path) -> np.ndarray:
    """`page` as headless Chromium shows it in a SCREEN-sized window, as an RGB array."""
    subprocess.run([chromium, *HEADLESS, f"--window-size={SCREEN[0]},{SCREEN[1]}", f"--screenshot={image}",
                    page.as_uri()], capture_output=True, timeout=120, check=True)
    return np.asarray(Image.open(image).convert("RGB"), dtype=np.int16)


def changed_from_source(chromium: str, page: Path, tmp_path: Path) -> float:
    """The share of pixels that differ clearly between `page`'s screenshot and a screenshot of its bytes
    served as text/plain (a .txt copy): about 0 for a page Chromium shows as source."""
    source = tmp_path / f"{page.name}.source.txt"
    shutil.copyfile(page, source)
    shown = screenshot(chromium, page, tmp_path / f"{page.name}.png")
    as_text = screenshot(chromium, source, tmp_path / f"{page.name}.source.png")
    return float((np.abs(shown - as_text).max(axis=2) > 64).mean())


def assert_renders_as_a_page(chromium: str, page: Path, tmp_path: Path) -> float:
    """Open `page` in headless Chromium: its DOM is the page's own (its <h1> first), not the one <pre> of
    text Chromium wraps source in, and its screenshot differs from its source's in at least
    MIN_CHANGED_PIXELS of the pixels. Returns that share."""
    dom = subprocess.run([chromium, *HEADLESS, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    body = re.search(r"<body[^>]*>\s*<(\w+)", dom)
    assert body and body.group(1) == "h1", f"{page} shows as text, not a page: {dom[:300]}"
    changed = changed_from_source(chromium, page, tmp_path)
    assert changed >= MIN_CHANGED_PIXELS, f"{page} looks like its own source text ({changed:.2%} of pixels differ)"
    return changed
