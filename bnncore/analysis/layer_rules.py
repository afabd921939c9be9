"""The table of layer rules, as the analysis uses it.

The table itself lives in :mod:`bnncore_runtime.layer_rules` so that the
TensorFlow-free runtime can read it too; this module re-exports it for users
of :mod:`bnncore.analysis` (``from bnncore.analysis.layer_rules import
rule_of``). See that module for what a rule says and how to add a layer type.
"""

from bnncore_runtime.layer_rules import (
    ACTIVATION_FACTORS,
    DEFAULT_FACTOR,
    QUANTIZER_FACTORS,
    RULES,
    Fold,
    LayerRule,
    MacTerm,
    RuleError,
    Weight,
    dtype_bits,
    fixed_elements,
    intermediate_elements,
    layer_type,
    rule_for,
    rule_of,
)

__all__ = [
    "ACTIVATION_FACTORS",
    "DEFAULT_FACTOR",
    "QUANTIZER_FACTORS",
    "RULES",
    "Fold",
    "LayerRule",
    "MacTerm",
    "RuleError",
    "Weight",
    "dtype_bits",
    "fixed_elements",
    "intermediate_elements",
    "layer_type",
    "rule_for",
    "rule_of",
]
