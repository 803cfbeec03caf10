"""flowline: Kubeflow Pipelines components and KServe serving for tabular models."""

__version__ = "0.1.0"
# The image pipeline steps, Katib trials and servers run in unless told otherwise (`--image`).
DEFAULT_IMAGE = f"ghcr.io/flowline-ml/flowline:{__version__}"


def one_line_warnings() -> None:
    """Warnings (an unsigned package or audit log) as one line a person reads, `flowline: warning: ...`, each
    once, not as a source listing: in the command and in every server worker process, which starts afresh."""
    import warnings

    warnings.formatwarning = lambda message, category, filename, lineno, line=None: f"flowline: warning: {message}\n"
    warnings.filterwarnings("once", category=UserWarning)  # "not signed" once per process, not once per record
