"""flowline: Kubeflow Pipelines components and KServe serving for tabular models."""

__version__ = "0.1.0"
# The image pipeline steps, Katib trials and servers run in unless told otherwise (`--image`).
DEFAULT_IMAGE = f"ghcr.io/flowline-ml/flowline:{__version__}"
IMAGE_ENV = "FLOWLINE_IMAGE"  # a team's own build of it, for every command and Python call that compiles or submits


def default_image() -> str:
    """$FLOWLINE_IMAGE, else DEFAULT_IMAGE: the image a compiled or submitted pipeline runs in unless given one."""
    import os

    return os.environ.get(IMAGE_ENV) or DEFAULT_IMAGE


def one_line_warnings() -> None:
    """Warnings (an unsigned package or audit log) as one line a person reads, `flowline: warning: ...`, each
    once, not as a source listing: in the command and in every server worker process, which starts afresh."""
    import warnings

    warnings.formatwarning = lambda message, category, filename, lineno, line=None: f"flowline: warning: {message}\n"
    warnings.filterwarnings("once", category=UserWarning)  # "not signed" once per process, not once per record
