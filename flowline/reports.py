"""Self-contained HTML reports: one page, inline CSS, plots embedded as PNG data URIs.

The Kubeflow UI shows an HTML artifact in a sandboxed frame, so a report must not load
anything: no scripts, no stylesheets, no image files beside it.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any, Iterable, Sequence

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 70em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f2f2f2; }
.fail { color: #b00020; font-weight: bold; }
.pass { color: #1b5e20; }
img { max-width: 100%; }
"""


def escape(value: object) -> str:
    return html.escape(str(value), quote=True)


def number(value: float | int) -> str:
    """The one way reports write a number: thousands separated, floats to 4 decimal places
    (0.8512, 37,650.8162), whole numbers without any (7,043)."""
    return f"{value:,}" if isinstance(value, int) else f"{value:,.4f}"


def members(members: Sequence[dict]) -> str:
    """A model's members in words, for every surface that shows them (run summary, model card, registry):
    'xgboost 0.8213 (5 best trials averaged) + linear 0.3568 (5 fold models averaged)'; a lone member of weight 1
    by its family alone. `members` as model.json's summary lists them: family, weight and, where several models
    are averaged, trials and folds."""
    def member(entry: dict) -> str:
        weight = "" if len(members) == 1 and entry["weight"] == 1 else f" {number(entry['weight'])}"
        trials = f"{entry['trials']} best trials" if "trials" in entry else ""
        folds = f"{entry['folds']} fold models" if "folds" in entry else ""
        averaged = f" ({' x '.join(filter(None, (trials, folds)))} averaged)" if trials or folds else ""
        return f"{entry['family']}{weight}{averaged}"
    return " + ".join(map(member, members))


def stated(text: str | None, field: str) -> str:
    """The use case's text, or what its absence means: a model card must not leave it empty (HTML or terminal)."""
    return (text or "").strip() or f"Not stated by the use case ({field})."


def cell(value: object) -> str:
    """A table cell's text: floats as `number` writes them, pass/fail marked for the eye."""
    if isinstance(value, float):
        return number(value)
    if value in ("pass", "FAIL", "fail"):
        return f'<span class="{"pass" if value == "pass" else "fail"}">{escape(value)}</span>'
    return escape(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def subplots(*args: Any, **kwargs: Any):
    """matplotlib's `subplots`, drawing off screen. matplotlib loads here, on the first plot, so that
    modules that only import this one for its tables never pay for it."""
    import matplotlib

    matplotlib.use("Agg")  # no display in a pipeline step or a test
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def importance_chart(importance: dict[str, float], units: str) -> str:
    """Horizontal bars of mean |SHAP value| per column, the largest on top, as an embedded PNG."""
    items = list(importance.items())[::-1]
    figure, axis = subplots(figsize=(7, 0.3 * len(items) + 1))
    axis.barh([name for name, _ in items], [value for _, value in items], color="#1f77b4")
    axis.set_xlabel(f"mean |SHAP value| ({units})")
    return figure_image(figure, "global importance: mean absolute SHAP value per column")


def figure_image(figure, alt: str) -> str:
    """The figure as an embedded PNG <img>; the figure is closed."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{escape(alt)}">'


def page(title: str, sections: Iterable[str]) -> str:
    """A complete HTML5 document; `sections` are HTML fragments, already escaped."""
    body = "\n".join(sections)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{escape(title)}</title>\n'
            f"<style>{STYLE}</style>\n</head>\n<body>\n<h1>{escape(title)}</h1>\n{body}\n</body>\n</html>\n")
