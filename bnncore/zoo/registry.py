"""The zoo's models by name, with the figures Larq Zoo publishes for them.

:func:`get` returns a model's constructor (``get("QuickNet")()`` builds it);
:func:`names` lists the names; :func:`entry` adds the published figures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import keras

from bnncore.zoo.alexnet import BinaryAlexNet
from bnncore.zoo.birealnet import BiRealNet
from bnncore.zoo.densenet import (
    BinaryDenseNet28,
    BinaryDenseNet37,
    BinaryDenseNet37Dilated,
    BinaryDenseNet45,
)
from bnncore.zoo.dorefanet import DoReFaNet
from bnncore.zoo.meliusnet import MeliusNet22
from bnncore.zoo.quicknet import QuickNet, QuickNetLarge, QuickNetSmall
from bnncore.zoo.realtobinary import RealToBinaryNet
from bnncore.zoo.resnet_e import BinaryResNetE18
from bnncore.zoo.xnornet import XNORNet

__all__ = ["Entry", "entries", "entry", "get", "names"]

Constructor = Callable[..., keras.Model]


@dataclass(frozen=True)
class Entry:
    """A zoo model and what Larq Zoo's documentation publishes about it.

    Attributes:
        name: Public name (``"QuickNet"``).
        constructor: Builds the model; see its docstring for the arguments.
        reference: The paper (or Larq Zoo for the ``sota`` models).
        published_params: Larq Zoo's parameter count at 224×224×3.
        params_rule: What that count counts: ``"keras"`` (``count_params()``,
            BatchNorm with all its 2-4 weights per channel) or ``"inference"``
            (BatchNorm folded to 2 per channel). Verified by building the model.
        published_memory_mib: Larq Zoo's model size in MiB (1 bit per binary
            kernel weight, 2 float32 per BatchNorm channel, 32 bits otherwise).
    """

    name: str
    constructor: Constructor
    reference: str
    published_params: int
    params_rule: Literal["keras", "inference"]
    published_memory_mib: float


_R2B = "Martinez et al., ICLR 2020, arXiv:2003.11535"
_BDN = "Bethge et al., 2019, arXiv:1906.08637"

_ENTRIES = [
    Entry(
        "QuickNetSmall", QuickNetSmall, "Larq Zoo sota", 12_655_688, "inference", 4.00
    ),
    Entry("QuickNet", QuickNet, "Larq Zoo sota", 13_234_088, "inference", 4.17),
    Entry(
        "QuickNetLarge", QuickNetLarge, "Larq Zoo sota", 23_342_248, "inference", 5.40
    ),
    Entry("RealToBinaryNet", RealToBinaryNet, _R2B, 11_995_624, "keras", 5.13),
    Entry("BinaryDenseNet28", BinaryDenseNet28, _BDN, 5_150_504, "keras", 4.04),
    Entry("BinaryDenseNet37", BinaryDenseNet37, _BDN, 8_734_120, "keras", 5.13),
    Entry(
        "BinaryDenseNet37Dilated",
        BinaryDenseNet37Dilated,
        _BDN,
        8_734_120,
        "keras",
        5.13,
    ),
    Entry("BinaryDenseNet45", BinaryDenseNet45, _BDN, 13_939_240, "keras", 7.35),
    Entry(
        "MeliusNet22",
        MeliusNet22,
        "Bethge et al., 2020, arXiv:2001.05936",
        6_944_584,
        "inference",
        3.88,
    ),
    Entry("BinaryResNetE18", BinaryResNetE18, _BDN, 11_699_368, "keras", 4.00),
    Entry(
        "BiRealNet",
        BiRealNet,
        "Liu et al., ECCV 2018, arXiv:1808.00278",
        11_699_112,
        "keras",
        4.00,
    ),
    Entry(
        "XNORNet",
        XNORNet,
        "Rastegari et al., ECCV 2016, arXiv:1603.05279",
        62_396_768,
        "keras",
        22.77,
    ),
    Entry(
        "BinaryAlexNet",
        BinaryAlexNet,
        "Hubara et al., NeurIPS 2016, arXiv:1602.02830",
        61_859_192,
        "keras",
        7.45,
    ),
    Entry(
        "DoReFaNet",
        DoReFaNet,
        "Zhou et al., 2016, arXiv:1606.06160",
        62_403_912,
        "keras",
        22.80,
    ),
]
_BY_NAME = {e.name: e for e in _ENTRIES}


def names() -> list[str]:
    """The names of the zoo's models, in the order of the zoo table."""
    return [e.name for e in _ENTRIES]


def entries() -> list[Entry]:
    """Every :class:`Entry`, in the order of :func:`names`."""
    return list(_ENTRIES)


def entry(name: str) -> Entry:
    """The :class:`Entry` of model ``name``.

    Raises:
        ValueError: if ``name`` is not a zoo model; the message lists them.
    """
    if not isinstance(name, str) or name not in _BY_NAME:
        raise ValueError(
            f"Unknown zoo model: name={name!r}. Known models: {', '.join(names())}."
        )
    return _BY_NAME[name]


def get(name: str) -> Constructor:
    """The constructor of model ``name`` (e.g. ``get("QuickNet")()``).

    Raises:
        ValueError: if ``name`` is not a zoo model; the message lists them.
    """
    return entry(name).constructor
