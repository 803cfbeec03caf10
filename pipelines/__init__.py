"""Pipelines: the use-case specs, the pipeline template, local runs and the `flowline` command."""
