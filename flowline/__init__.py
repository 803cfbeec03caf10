"""flowline: Kubeflow Pipelines components and KServe serving for tabular models."""

__version__ = "0.1.0"
