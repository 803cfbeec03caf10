"""How a model card states where its model came from and where each gate was judged: the lines the HTML card
(components/package/model_card.py) and `flowline show` share."""

from __future__ import annotations

from flowline.use_case import UseCase

FAIRNESS_ROWS = "out-of-fold rows, served thresholds"  # where a fairness gate is judged (never test)


def code_line(code: dict) -> str:
    """flowline's version and the commit that built the package, as the card shows them."""
    if not code["commit"]:
        return f"flowline {code['flowline']} (commit not known: no checkout, image commit or git where it ran)"
    changed = " with uncommitted changes" if code["dirty"] else ""
    return f"flowline {code['flowline']}, commit {code['commit']}{changed}"


def quality_rows(gate: dict) -> str:
    """Where a quality gate was judged: on test, and (for a gate a threshold decides, when per-group thresholds
    are served) on the decisions served."""
    return "test rows" + (f", {gate['decisions']}" if gate.get("decisions") else "")


def search_text(use_case: UseCase, run: dict) -> str:
    """How the models were searched, as the run ran it: its seed, its budget (with the run's override), backend."""
    tuning = use_case.tuning
    if run.get("trials"):
        budget = f"{run['trials']} trials per family (the run's --trials)"
    elif tuning.time_budget:
        budget = f"a time budget of {tuning.time_budget:g} s"
    else:
        budget = "trials per family " + ", ".join(f"{family} {trials}" for family, trials in tuning.families.items())
    backend = run.get("tuning_backend") or tuning.backend
    return f"seed {tuning.seed}; {budget}; backend {backend}"


def environment_text(environment: dict | None) -> str:
    """Python and the versions of the libraries that made the model, as the card shows them."""
    if not environment:
        return "not recorded"
    libraries = ", ".join(f"{name} {version}" for name, version in environment["libraries"].items() if version)
    return f"Python {environment['python']}; {libraries}"
