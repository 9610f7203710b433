"""Keys of fastnn's counter-based random streams.

Random kernels (Dropout masks, Gaussian input noise) draw from Philox4x32-10 under a 64-bit key
and a step counter (see docs/DECISIONS.md), never from an array drawn on the host. Each stream's key
derives from its owner's seed (the model's for a layer, the Trainer's for an augmentation) and
the stream's position, so the same seed gives the same draws on every device.
"""

from __future__ import annotations

import numpy as np

#: Keeps these keys apart from the children SeedSequence.spawn would make from the same entropy.
_TAG = 0x6661_73746E6E  # "fastnn"


def stream_key(entropy, index):
    """64-bit key of stream ``index`` of an owner seeded with ``entropy`` (an int, as
    ``np.random.SeedSequence(seed).entropy``).

    >>> stream_key(0, 1) == stream_key(0, 1) != stream_key(0, 2)
    True
    """
    low, high = np.random.SeedSequence(entropy, spawn_key=(_TAG, index)).generate_state(2, np.uint32)
    return int(low) | int(high) << 32
