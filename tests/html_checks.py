"""Checks for the HTML reports: valid HTML5 (html5lib, strict), and a real render in headless Chromium."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import html5lib

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
