"""The HTML report page itself: valid HTML5, and it loads with its images in headless Chromium."""

from pathlib import Path

import html5lib
import pytest
from html_checks import (MIN_CHANGED_PIXELS, assert_renders_as_a_page, assert_valid_html, changed_from_source,
                         loaded_image_widths)

from flowline import reports


def a_page() -> str:
    figure, axis = reports.subplots(figsize=(4, 3))
    axis.plot([0, 1], [0, 1])
    return reports.page("A <report> & more", [reports.table(["name", "value"], [["a&b", 0.5], ["gate", "FAIL"]]),
                                              reports.figure_image(figure, "a line")])


def test_a_report_page_is_valid_html_with_its_text_escaped():
    page = a_page()
    assert_valid_html(page)
    assert "<title>A &lt;report&gt; &amp; more</title>" in page and "<td>a&amp;b</td>" in page
    assert '<span class="fail">FAIL</span>' in page
    with pytest.raises(html5lib.html5parser.ParseError):
        assert_valid_html(page.replace("</table>", "</tabel>"))  # the check can fail


def test_a_report_page_renders_in_chromium_with_its_image(chromium, tmp_path: Path):
    page = tmp_path / "report.html"
    page.write_text(a_page())
    widths = loaded_image_widths(chromium, page, tmp_path)
    assert len(widths) == 1 and widths[0] > 100
    broken = tmp_path / "broken.html"
    broken.write_text(a_page().replace("base64,", "base64,!!not-a-png", 1))
    assert loaded_image_widths(chromium, broken, tmp_path) == [0]  # a broken image is seen as one


def test_a_report_page_shows_rendered_content_and_its_source_as_text_does_not(chromium, tmp_path: Path):
    page = tmp_path / "report.html"
    page.write_text(a_page())
    assert assert_renders_as_a_page(chromium, page, tmp_path) >= MIN_CHANGED_PIXELS
    # The same bytes as text/plain, and with no extension (as KFP names an artifact's file): Chromium shows the
    # source, and both the DOM and the screenshot say so.
    for raw in (tmp_path / "report.txt", tmp_path / "report"):
        raw.write_text(a_page())
        with pytest.raises(AssertionError, match="shows as text, not a page"):
            assert_renders_as_a_page(chromium, raw, tmp_path)
        assert changed_from_source(chromium, raw, tmp_path) < MIN_CHANGED_PIXELS


def test_a_models_members_read_the_same_on_every_surface():
    """Run summary, model card and registry all write members this way: weights, and a bagged family's folds."""
    assert reports.members([{"family": "xgboost", "weight": 0.82, "folds": 5}, {"family": "linear", "weight": 0.3568}]
                           ) == "xgboost 0.8200 (5 fold models averaged) + linear 0.3568"
    assert reports.members([{"family": "linear", "weight": 1.0, "folds": 5}]) == "linear (5 fold models averaged)"
    assert reports.members([{"family": "xgboost", "weight": 1.0}]) == "xgboost"
    assert reports.members([{"family": "xgboost", "weight": 0.7, "trials": 5}, {"family": "linear", "weight": 0.4}]
                           ) == "xgboost 0.7000 (5 best trials averaged) + linear 0.4000"
    assert reports.members([{"family": "lightgbm", "weight": 1.0, "trials": 3, "folds": 5}]
                           ) == "lightgbm (3 best trials x 5 fold models averaged)"
    assert reports.members([{"family": "linear", "weight": 0.9}]) == "linear 0.9000"  # a blend of one, with a bias
