"""The package component."""
