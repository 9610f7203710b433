"""Parameter metadata: where each parameter lives in a model's flat buffers.

Shared by fastnn.model (which lays the buffers out), fastnn.optim (which cuts them into update
segments) and fastnn.checkpoint (which bounds the size of a saved optimizer state). It imports
nothing from fastnn, so each of them can depend on it without depending on the others.
"""

from __future__ import annotations

import math

#: Each parameter starts on a multiple of this many elements (64 bytes in float32), so every
#: kernel sees aligned rows; the padding stays zero in parameters and gradients.
ALIGN = 16


class ParamInfo:
    """Where one parameter lives in the flat buffers: ``params[start:stop].reshape(shape)``.

    ``layer`` is its owner (anything with a ``trainable`` attribute), ``name`` its name in the
    layer, ``kind`` one of 'weight' (penalised and decayed), 'bias', 'norm' (trained without
    either) or 'buffer' (saved and moved with the model, never updated).
    """

    __slots__ = ("layer", "name", "kind", "shape", "start", "stop")

    def __init__(self, layer, name, kind, shape, start, stop):
        self.layer, self.name, self.kind, self.shape, self.start, self.stop = layer, name, kind, shape, start, stop

    @property
    def trainable(self):
        """True when optimizers update it: its layer is trainable and it is not a buffer."""
        return self.layer.trainable and self.kind != "buffer"

    def __repr__(self):
        return f"ParamInfo({self.name!r}, {self.kind!r}, shape={self.shape}, [{self.start}:{self.stop}])"


def layout(entries):
    """Lay parameters out in one flat buffer, each starting on a multiple of ALIGN elements.

    ``entries``: (layer, name, shape, kind) in storage order. Returns ([ParamInfo], the buffer's
    length, padding included).
    """
    info, offset = [], 0
    for layer, name, shape, kind in entries:
        size = math.prod(shape)
        info.append(ParamInfo(layer, name, kind, shape, offset, offset + size))
        offset = -(-(offset + size) // ALIGN) * ALIGN
    return info, offset


def max_padded_size(n_params):
    """An upper bound of the flat buffer's length for ``n_params`` parameters (one ALIGN of
    padding per parameter at most, and a parameter holds at least one element)."""
    return n_params * (1 + ALIGN)


__all__ = ["ALIGN", "ParamInfo", "layout", "max_padded_size"]
