"""KFP components: one folder each, a plain function in component.py over a plain module.

The pipeline template makes each function a KFP component in the image it is given
(`flowline_component`), so the image is an argument, never read when a module is imported.
"""

from __future__ import annotations

from typing import Callable

from kfp import dsl

from flowline import DEFAULT_IMAGE


def flowline_component(func: Callable, image: str = DEFAULT_IMAGE) -> dsl.component:
    """Make a lightweight KFP component of `func` that runs in the flowline `image`.

    The image already holds kfp and flowline, so nothing is pip-installed at run time
    (which also keeps kfp.local's SubprocessRunner from touching the environment).
    """
    return dsl.component(func, base_image=image, install_kfp_package=False)
