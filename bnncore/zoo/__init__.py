"""Reference BNN architectures (Larq Zoo's models on Keras 3), buildable by name.

Every model is a constructor with the signature
``Model(input_shape=None, input_tensor=None, num_classes=1000, include_top=True,
weights=None)`` returning a functional ``keras.Model`` made of ``bnncore`` and
Keras layers; ``weights`` is ``None`` or the path of a local file (nothing is
downloaded): a Keras 3 ``.weights.h5`` / ``.keras`` file, or a Larq Zoo /
tf-keras ``.h5`` weights file (:func:`load_larq_weights`). ``get("QuickNet")``
returns a constructor by name and ``names()`` lists them.

For Larq Zoo users (``import bnncore.zoo as lqz``): the ``sota`` and
``literature`` namespaces, :func:`preprocess_input` and
:func:`decode_predictions` (the ImageNet class index ships with bnncore).
"""

from bnncore.zoo import literature, sota
from bnncore.zoo.alexnet import BinaryAlexNet
from bnncore.zoo.birealnet import BiRealNet
from bnncore.zoo.densenet import (
    BinaryDenseNet28,
    BinaryDenseNet37,
    BinaryDenseNet37Dilated,
    BinaryDenseNet45,
)
from bnncore.zoo.dorefanet import DoReFaNet
from bnncore.zoo.imagenet import (
    decode_predictions,
    imagenet_classes,
    preprocess_input,
)
from bnncore.zoo.larq_weights import (
    LarqWeight,
    is_larq_weights_file,
    larq_weights_layout,
    load_larq_weights,
)
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
    "LarqWeight",
    "MeliusNet22",
    "QuickNet",
    "QuickNetLarge",
    "QuickNetSmall",
    "RealToBinaryNet",
    "XNORNet",
    "decode_predictions",
    "entries",
    "entry",
    "get",
    "imagenet_classes",
    "is_larq_weights_file",
    "larq_weights_layout",
    "literature",
    "load_larq_weights",
    "names",
    "preprocess_input",
    "sota",
]
