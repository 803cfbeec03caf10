"""flowline: Kubeflow Pipelines components and KServe serving for tabular models."""

__version__ = "0.1.0"
# The image pipeline steps, Katib trials and servers run in unless told otherwise (`--image`).
DEFAULT_IMAGE = f"ghcr.io/flowline-ml/flowline:{__version__}"
