"""Larq Zoo's ``sota`` namespace: ``lqz.sota.QuickNet`` → ``bnncore.zoo.sota.QuickNet``.

The same constructors as ``bnncore.zoo.QuickNet`` etc. (see
:mod:`bnncore.zoo.quicknet`).
"""

from bnncore.zoo.quicknet import QuickNet, QuickNetLarge, QuickNetSmall

__all__ = ["QuickNet", "QuickNetLarge", "QuickNetSmall"]
