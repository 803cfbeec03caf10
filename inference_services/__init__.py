"""The KServe serving runtime for flowline model packages."""
