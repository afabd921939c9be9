"""Reference BNN architectures (Larq Zoo's models on Keras 3), buildable by name.

Every model is a constructor with the signature
``Model(input_shape=None, input_tensor=None, num_classes=1000, include_top=True,
weights=None)`` returning a functional ``keras.Model`` made of ``bnncore`` and
Keras layers; ``weights`` is ``None`` or the path of a local file (nothing is
downloaded). ``get("QuickNet")`` returns a constructor by name and ``names()``
lists them.
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
from bnncore.zoo.quicknet import QuickNet, QuickNetLarge, QuickNetSmall
from bnncore.zoo.realtobinary import RealToBinaryNet
from bnncore.zoo.registry import Entry, entries, entry, get, names
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
    "Entry",
    "MeliusNet22",
    "QuickNet",
    "QuickNetLarge",
    "QuickNetSmall",
    "RealToBinaryNet",
    "XNORNet",
    "entries",
    "entry",
    "get",
    "names",
]
