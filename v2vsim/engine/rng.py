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

__all__ = ["replication_states", "stream_seed", "stream_states", "UniformStream", "Streams", "Draws", "Uniforms", "floats",
           "use_compiled_fill"]

_BLOCK = 256
_TINY = float(np.finfo(float).tiny)


def stream_seed(seed: int, replication: int, purpose: str) -> np.random.SeedSequence:
    """The seed sequence of one named stream (crc32 is stable across processes, unlike hash())."""
    return np.random.SeedSequence(seed, spawn_key=(replication, zlib.crc32(purpose.encode())))


def _words(x: int) -> list[int]:
    """An integer as numpy's SeedSequence takes it: 32-bit words, least significant first."""
    x = int(x)
    if x < 0:
        raise ValueError("seeds and replication numbers must be non-negative")
    out = [x & 0xFFFFFFFF]
    x >>= 32
    while x:
        out.append(x & 0xFFFFFFFF)
        x >>= 32
    return out


_INIT_A, _MULT_A, _INIT_B, _MULT_B = 0x43B0D7E5, 0x931E8875, 0x8B51F9DD, 0x58F38DED
_MIX_L, _MIX_R = np.uint32(0xCA01F9DD), np.uint32(0x4973F715)
_SHIFT = np.uint32(16)


def _mixed_states(entropy: np.ndarray) -> np.ndarray:
    """SeedSequence's entropy mixing and ``generate_state(4, uint64)`` for many entropy arrays
    at once (``entropy``: words x streams, uint32), following numpy's algorithm step by step."""
    hash_a = _INIT_A

    def hashmix(value: np.ndarray) -> np.ndarray:
        nonlocal hash_a
        value = value ^ np.uint32(hash_a)
        hash_a = (hash_a * _MULT_A) & 0xFFFFFFFF
        value = value * np.uint32(hash_a)
        return value ^ (value >> _SHIFT)

    def mix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        result = _MIX_L * x - _MIX_R * y
        return result ^ (result >> _SHIFT)

    length, streams = entropy.shape
    with np.errstate(over="ignore"):
        pool = [hashmix(entropy[i] if i < length else np.zeros(streams, np.uint32)) for i in range(4)]
        for src in range(4):
            for dst in range(4):
                if src != dst:
                    pool[dst] = mix(pool[dst], hashmix(pool[src]))
        for src in range(4, length):
            for dst in range(4):
                pool[dst] = mix(pool[dst], hashmix(entropy[src]))
        hash_b = _INIT_B
        out = np.empty((streams, 8), dtype=np.uint32)
        for i in range(8):
            value = pool[i % 4] ^ np.uint32(hash_b)
            hash_b = (hash_b * _MULT_B) & 0xFFFFFFFF
            value = value * np.uint32(hash_b)
            out[:, i] = value ^ (value >> _SHIFT)
    return out.view("<u8")


def stream_states(seed: int, keys: list[tuple[int, str]]) -> dict[tuple[int, str], np.ndarray]:
    """The PCG64 seed words of many named streams ``(replication, purpose)`` at once: exactly
    ``stream_seed(seed, replication, purpose).generate_state(4, np.uint64)`` (a test holds it
    to numpy's own), computed together instead of one SeedSequence each."""
    run = _words(seed)
    groups: dict[int, list[tuple[tuple[int, str], list[int]]]] = {}
    for key in keys:
        replication, purpose = key
        spawn = _words(replication) + _words(zlib.crc32(purpose.encode()))
        entropy = run + [0] * max(0, 4 - len(run)) + spawn
        groups.setdefault(len(entropy), []).append((key, entropy))
    out: dict[tuple[int, str], np.ndarray] = {}
    for members in groups.values():
        states = _mixed_states(np.array([e for _, e in members], dtype=np.uint32).T)
        out.update((key, states[k]) for k, (key, _) in enumerate(members))
    return out


def replication_states(seed: int, replications: list[int], purposes: list[str]) -> dict[int, dict[str, np.ndarray]]:
    """:func:`stream_states` of every purpose in every replication, by replication and purpose:
    the same words, with the entropy of all streams laid out as arrays at once (a replication
    number below 2**32 is one word, as a purpose's crc32 is)."""
    head = _words(seed)
    head += [0] * max(0, 4 - len(head))
    small = [r for r in dict.fromkeys(replications) if 0 <= r < 2**32]
    others = [r for r in dict.fromkeys(replications) if not 0 <= r < 2**32]
    out: dict[int, dict[str, np.ndarray]] = {}
    if small and purposes:
        k = len(purposes)
        entropy = np.empty((len(head) + 2, len(small) * k), dtype=np.uint32)
        entropy[:len(head)] = np.array(head, dtype=np.uint32)[:, None]
        entropy[len(head)] = np.repeat(np.array(small, dtype=np.uint32), k)
        entropy[len(head) + 1] = np.tile(np.array([zlib.crc32(p.encode()) for p in purposes], dtype=np.uint32),
                                         len(small))
        states = _mixed_states(entropy)
        for a, r in enumerate(small):
            out[r] = dict(zip(purposes, states[a * k:(a + 1) * k]))
    if others:
        for (r, purpose), words in stream_states(seed, [(r, p) for r in others for p in purposes]).items():
            out.setdefault(r, {})[purpose] = words
    return out


class _GivenState(np.random.bit_generator.ISeedSequence):
    """A seed sequence whose state words are already known (from :func:`stream_states`)."""

    def __init__(self, state: np.ndarray) -> None:
        self.state = state

    def generate_state(self, n_words: int, dtype: Any = np.uint32) -> np.ndarray:
        if n_words != 4 or np.dtype(dtype) != np.uint64:  # pragma: no cover - PCG64 asks this
            raise ValueError("only PCG64's seeding is known")
        return self.state.copy()


class UniformStream:
    """Uniforms in (0, 1) addressed by patient index, generated lazily in blocks."""

    __slots__ = ("_seed", "_replication", "_purpose", "_state", "_gen", "values")

    def __init__(self, seed: int, replication: int, purpose: str, state: np.ndarray | None = None) -> None:
        self._seed, self._replication, self._purpose, self._state = seed, replication, purpose, state
        self._gen: np.random.Generator | None = None  # made on first use (see _generator)
        self.values: np.ndarray = np.empty(0)

    def _seed_words(self) -> np.ndarray:
        """PCG64's four seed words of this stream."""
        if self._state is None:
            self._state = stream_seed(self._seed, self._replication, self._purpose).generate_state(4, np.uint64)
        return self._state

    def _generator(self) -> np.random.Generator:
        """The stream's generator, positioned after the values it has (values filled without
        it, by :func:`fill_together`'s compiled generator, are stepped over)."""
        if self._gen is None:
            self._gen = np.random.Generator(np.random.PCG64(_GivenState(self._seed_words())))
            if self.values.size:
                self._gen.bit_generator.advance(self.values.size)  # one 64-bit output per double
        return self._gen

    def extend_to(self, size: int) -> np.ndarray:
        """Make sure at least ``size`` values exist and return the buffer."""
        have = self.values.size
        if size > have:
            # Grow geometrically so a million patients cost a few dozen generator calls.
            target = max(size, 2 * have, _BLOCK)
            target = -(-target // _BLOCK) * _BLOCK
            fresh = self._generator().random(target - have)
            # random() is in [0, 1); an exact 0 would map to the lower support bound, which
            # is legitimate, but -log(0) style transforms need u > 0.
            np.maximum(fresh, _TINY, out=fresh)
            self.values = np.concatenate((self.values, fresh)) if have else fresh
        return self.values

    @staticmethod
    def fill_together(streams: list["UniformStream"], size: int) -> None:
        """``extend_to(size)`` of streams that have no values yet, their blocks generated into
        the rows of one array and floored at once (the same values as one by one): by the
        compiled generator where the compiled engine has loaded it (:func:`use_compiled_fill`),
        else by each stream's own numpy generator."""
        fresh = [s for s in streams if not s.values.size]
        if not fresh or size <= 0:
            return
        target = -(-max(size, _BLOCK) // _BLOCK) * _BLOCK
        block = np.empty((len(fresh), target))
        fill = _COMPILED_FILL[0]
        if fill is not None:
            fill(np.array([s._seed_words() for s in fresh], dtype=np.uint64), block)
        else:
            for s, row in zip(fresh, block):
                s._generator().random(out=row)
        np.maximum(block, _TINY, out=block)
        for s, row in zip(fresh, block):
            s.values = row

    @staticmethod
    def fill_sized(streams: list["UniformStream"], sizes: list[int]) -> None:
        """:meth:`fill_together` of streams that each need their own size (grouped by the
        blocks a size takes, each group's rows generated at once)."""
        by_blocks: dict[int, list[UniformStream]] = {}
        for stream, size in zip(streams, sizes):
            by_blocks.setdefault(-(-max(size, 1) // _BLOCK), []).append(stream)
        for blocks, group in by_blocks.items():
            UniformStream.fill_together(group, blocks * _BLOCK)

    def __getitem__(self, index: int) -> float:
        values = self.values
        if index >= values.size:
            values = self.extend_to(index + 1)
        return float(values[index])


# --------------------------------------------------------------------------- PCG64, compiled
# numpy's PCG64 (XSL-RR 128/64) and Generator.random() step by step on 64-bit words, so that
# many streams' first blocks are made in one compiled call: the same doubles, bit for bit (a
# test holds it to numpy's own). Plain Python here; the compiled engine compiles it with Numba.
_M_HIGH, _M_LOW = 2549297995355413924, 4865540595714422341  # PCG's default 128-bit multiplier

#: The compiled :func:`_pcg64_fill`, once the compiled engine has made it (None: numpy's).
_COMPILED_FILL: list[Any] = [None]


def use_compiled_fill(fill: Any) -> None:
    """Make :meth:`UniformStream.fill_together` use ``fill`` (:func:`_pcg64_fill` compiled)."""
    _COMPILED_FILL[0] = fill


def _pcg64_fill(words, out):  # type: ignore[no-untyped-def]
    """Fill each row of ``out`` with the doubles ``Generator(PCG64(seed)).random()`` gives for
    the seed words of the same row of ``words`` (n x 4, uint64: state high, low, sequence high,
    low; as PCG64 takes ``SeedSequence.generate_state(4, uint64)``). One function (Numba
    compiles it alone), the 128-bit arithmetic on (high, low) 64-bit words."""
    m32, s32 = np.uint64(0xFFFFFFFF), np.uint64(32)
    m_hi, m_lo = np.uint64(_M_HIGH), np.uint64(_M_LOW)
    zero, one, s63, s58, s64 = np.uint64(0), np.uint64(1), np.uint64(63), np.uint64(58), np.uint64(64)
    s11 = np.uint64(11)
    scale = 1.0 / 9007199254740992.0

    def step(hi, lo, inc_hi, inc_lo):  # type: ignore[no-untyped-def]
        # state * multiplier + increment (mod 2**128); the product's high word from 32-bit halves
        a_lo, a_hi, b_lo, b_hi = lo & m32, lo >> s32, m_lo & m32, m_lo >> s32
        p0, p1, p2, p3 = a_lo * b_lo, a_lo * b_hi, a_hi * b_lo, a_hi * b_hi
        mid = (p0 >> s32) + (p1 & m32) + (p2 & m32)
        high = p3 + (p1 >> s32) + (p2 >> s32) + (mid >> s32)
        new_hi = high + lo * m_hi + hi * m_lo
        new_lo = lo * m_lo
        out_lo = new_lo + inc_lo
        return new_hi + inc_hi + (one if out_lo < new_lo else zero), out_lo

    for k in range(words.shape[0]):
        # pcg_setseq_128_srandom_r: inc = seq << 1 | 1; state = 0; step; state += initstate; step
        inc_hi = (words[k, 2] << one) | (words[k, 3] >> s63)
        inc_lo = (words[k, 3] << one) | one
        hi, lo = step(zero, zero, inc_hi, inc_lo)
        lo2 = lo + words[k, 1]
        hi = hi + words[k, 0] + (one if lo2 < lo else zero)
        hi, lo = step(hi, lo2, inc_hi, inc_lo)
        for j in range(out.shape[1]):  # pcg64_next64 (step, then XSL-RR), as next_double
            hi, lo = step(hi, lo, inc_hi, inc_lo)
            x = hi ^ lo
            r = hi >> s58
            value = (x >> r) | (x << ((s64 - r) & s63))
            out[k, j] = float(value >> s11) * scale


class Streams:
    """All streams of one replication, created on first use by purpose name (``states``: the
    seed words of streams computed beforehand, see :func:`stream_states`)."""

    __slots__ = ("seed", "replication", "_streams", "_states")

    def __init__(self, seed: int, replication: int, states: dict[str, np.ndarray] | None = None) -> None:
        self.seed = int(seed)
        self.replication = int(replication)
        self._streams: dict[str, UniformStream] = {}
        self._states = states or {}

    def __call__(self, purpose: str) -> UniformStream:
        stream = self._streams.get(purpose)
        if stream is None:
            stream = self._streams[purpose] = UniformStream(self.seed, self.replication, purpose,
                                                            self._states.get(purpose))
        return stream


def floats(values: Any) -> array:
    """A compact array of Python-indexable floats (8 bytes each, unlike a list's 32)."""
    values = np.asarray(values, dtype=float).reshape(-1)
    out = array("d", [0.0]) * values.size
    if values.size:  # one copy, straight into the array's buffer (not through a bytes object)
        np.frombuffer(out, dtype=float)[:] = values
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

    @classmethod
    def given(cls, stream: UniformStream, dist: Any, values: array) -> "Draws":
        """Draws whose first values are already computed (``values``: what ``_grow`` makes of
        the stream's buffer as it stands; several replications' are computed together)."""
        self = cls.__new__(cls)
        self._stream = stream
        self._dist = dist
        self._values = values
        return self

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
