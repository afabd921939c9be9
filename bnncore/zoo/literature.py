"""Larq Zoo's ``literature`` namespace: ``lqz.literature.BinaryAlexNet`` →
``bnncore.zoo.literature.BinaryAlexNet``.

The same constructors as ``bnncore.zoo.BinaryAlexNet`` etc.; every model of
Larq Zoo's ``literature`` is here.
"""

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
from bnncore.zoo.realtobinary import RealToBinaryNet
from bnncore.zoo.resnet_e import BinaryResNetE18
from bnncore.zoo.xnornet import XNORNet

__all__ = [
    "BiRealNet",
    "BinaryAlexNet",
    "BinaryDenseNet28",
    "BinaryDenseNet37",
    "BinaryDenseNet37Dilated",
    "BinaryDenseNet45",
    "BinaryResNetE18",
    "DoReFaNet",
    "MeliusNet22",
    "RealToBinaryNet",
    "XNORNet",
]
