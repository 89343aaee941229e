"""Named, stable random streams for common random numbers.

Every purpose (arrivals, the cohort draw, a disease clock, a step's duration or failure on a
given attempt, ...) has its own stream keyed by the base seed, the replication and a stable
hash of the purpose's name. A stream is read *by patient index*: uniforms are generated in
blocks as the largest index grows, and patient *i* always takes element *i*. So the same
patient gets the same uniform for the same purpose in two scenarios, whatever else differs,
and values never depend on the order in which the simulation asks for them.
"""

from __future__ import annotations

import zlib
from array import array
from typing import Any

import numpy as np

__all__ = ["stream_seed", "UniformStream", "Streams", "Draws", "Uniforms", "floats"]

_BLOCK = 256
_TINY = float(np.finfo(float).tiny)


def stream_seed(seed: int, replication: int, purpose: str) -> np.random.SeedSequence:
    """The seed sequence of one named stream (crc32 is stable across processes, unlike hash())."""
    return np.random.SeedSequence(seed, spawn_key=(replication, zlib.crc32(purpose.encode())))


class UniformStream:
    """Uniforms in (0, 1) addressed by patient index, generated lazily in blocks."""

    __slots__ = ("_gen", "values")

    def __init__(self, seed: int, replication: int, purpose: str) -> None:
        self._gen = np.random.Generator(np.random.PCG64(stream_seed(seed, replication, purpose)))
        self.values: np.ndarray = np.empty(0)

    def extend_to(self, size: int) -> np.ndarray:
        """Make sure at least ``size`` values exist and return the buffer."""
        have = self.values.size
        if size > have:
            # Grow geometrically so a million patients cost a few dozen generator calls.
            target = max(size, 2 * have, _BLOCK)
            target = -(-target // _BLOCK) * _BLOCK
            fresh = self._gen.random(target - have)
            # random() is in [0, 1); an exact 0 would map to the lower support bound, which
            # is legitimate, but -log(0) style transforms need u > 0.
            np.maximum(fresh, _TINY, out=fresh)
            self.values = np.concatenate((self.values, fresh)) if have else fresh
        return self.values

    def __getitem__(self, index: int) -> float:
        values = self.values
        if index >= values.size:
            values = self.extend_to(index + 1)
        return float(values[index])


class Streams:
    """All streams of one replication, created on first use by purpose name."""

    __slots__ = ("seed", "replication", "_streams")

    def __init__(self, seed: int, replication: int) -> None:
        self.seed = int(seed)
        self.replication = int(replication)
        self._streams: dict[str, UniformStream] = {}

    def __call__(self, purpose: str) -> UniformStream:
        stream = self._streams.get(purpose)
        if stream is None:
            stream = self._streams[purpose] = UniformStream(self.seed, self.replication, purpose)
        return stream


def floats(values: Any) -> array:
    """A compact array of Python-indexable floats (8 bytes each, unlike a list's 32)."""
    out = array("d")
    out.frombytes(np.ascontiguousarray(values, dtype=float).tobytes())
    return out


class Draws:
    """Values of one distribution read by patient index from one uniform stream."""

    __slots__ = ("_stream", "_dist", "_values")

    def __init__(self, stream: UniformStream, dist: Any, size_hint: int) -> None:
        self._stream = stream
        self._dist = dist
        self._values = array("d")
        if size_hint:
            self._grow(size_hint)

    def _grow(self, size: int) -> None:
        self._values = floats(self._dist.ppf(self._stream.extend_to(size)))

    def __getitem__(self, index: int) -> float:
        try:
            return self._values[index]
        except IndexError:
            self._grow(index + 1)
            return self._values[index]

    def head(self, size: int) -> array:
        """The values of (at least) patients ``0 .. size-1``."""
        if len(self._values) < size:
            self._grow(size)
        return self._values


class Uniforms(Draws):
    """Plain uniforms by patient index (failure and response draws)."""

    __slots__ = ()

    def __init__(self, stream: UniformStream, size_hint: int) -> None:
        super().__init__(stream, None, size_hint)

    def _grow(self, size: int) -> None:
        self._values = floats(self._stream.extend_to(size))
