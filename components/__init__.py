"""KFP components: one folder each, a thin `@flowline_component` over a plain module."""

from __future__ import annotations

import os
from typing import Callable

from kfp import dsl

from flowline import __version__

IMAGE_ENV = "FLOWLINE_IMAGE"
DEFAULT_IMAGE = f"ghcr.io/flowline-ml/flowline:{__version__}"


def base_image() -> str:
    """The image every component runs in: $FLOWLINE_IMAGE, else the project image at this version."""
    return os.environ.get(IMAGE_ENV) or DEFAULT_IMAGE


def flowline_component(func: Callable) -> dsl.component:
    """Make a lightweight KFP component that runs in the flowline image.

    The image already holds kfp and flowline, so nothing is pip-installed at run time
    (which also keeps kfp.local's SubprocessRunner from touching the environment).
    """
    return dsl.component(func, base_image=base_image(), install_kfp_package=False)
