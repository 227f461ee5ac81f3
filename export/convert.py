"""One place where TFLite conversion runs, so that a model TFLite cannot convert fails in one line.

The converter reports an op outside the builtins as a page of MLIR; the user needs the op and the layer it sits in.

Example:
>>> builtin_ops_error("... fused[\\"Igamma:\\", \\"sequential_1/my_igamma/Igamma@__inference__decode_169\\"] ...")
'TFLite cannot convert the op Igamma (in layer sequential_1/my_igamma) to its builtin ops, the only ones the LiteRT interpreter on a device runs: write that layer with builtin TensorFlow ops, or leave it out of the decoder'
"""

from __future__ import annotations

import re

from tfvae.errors import ModelFileError

__all__ = ["convert", "builtin_ops_error"]

# `fused["Igamma:", "sequential_1/my_igamma/Igamma@__inference__decode_169"]`: the op and where it sits in the graph.
_OP_AT = re.compile(r'fused\["(\w+):", "([^"@]+)@')


def convert(converter) -> bytes:
    """`converter.convert()`, with an op outside the builtins reported as one `ModelFileError` naming op and layer."""
    from tensorflow.lite.python.convert_phase import ConverterError

    try:
        return converter.convert()
    except ConverterError as e:
        raise ModelFileError(builtin_ops_error(str(e))) from None


def builtin_ops_error(message: str) -> str:
    """The converter's message about an unsupported op, in one line naming the op and its layer."""
    found = _OP_AT.search(message)
    if found is None:
        first = message.strip().splitlines()[0] if message.strip() else "no reason given"
        return f"TFLite cannot convert this model to its builtin ops: {first[:300]}"
    op, path = found.groups()
    layer = path.rsplit("/", 1)[0] if "/" in path else path
    return (f"TFLite cannot convert the op {op} (in layer {layer}) to its builtin ops, the only ones the LiteRT "
            "interpreter on a device runs: write that layer with builtin TensorFlow ops, or leave it out of the decoder")
