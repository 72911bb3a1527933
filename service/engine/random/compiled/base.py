"""What the numba kernels share: the compile decorator and the few LLVM operations numba does not spell.

Importing this module raises ImportError when numba is absent; callers then keep the NumPy reference path.

Bit-identity with the NumPy reference rests on three things, all checked by tests/engine/test_parallel.py:
* ``fastmath`` is off, so LLVM never contracts ``a * b + c`` into a fused multiply-add nor reassociates;
* ``error_model="numpy"``: float division follows IEEE 754 (no Python ZeroDivisionError branch), which also
  keeps loops branch-free so LLVM can vectorise them;
* every step is the same correctly rounded operation, in the same order, as in ``detmath`` / ``variates``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from llvmlite import ir
from llvmlite.binding import get_host_cpu_name
from numba import njit, types
from numba.core import config
from numba.extending import intrinsic

F = TypeVar("F", bound=Callable[..., Any])

_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_I128 = ir.IntType(128)

_cached: list[Any] = []  # the dispatchers whose compiled code numba keeps on disk
_uncached: list[Any] = []  # those compiled in every process: no writable cache location


def jit(function: F) -> F:
    """Compile with the options above; cached on disk where a cache directory is writable."""
    options: dict[str, Any] = {"nogil": True, "fastmath": False, "error_model": "numpy"}
    try:
        dispatcher = njit(cache=True, **options)(function)
    except RuntimeError:  # no writable cache location (read-only install): compile per process instead
        dispatcher = njit(**options)(function)
        _uncached.append(dispatcher)
        return dispatcher  # type: ignore[no-any-return]
    _cached.append(dispatcher)
    return dispatcher  # type: ignore[no-any-return]


def counts() -> tuple[int, int, str, bool]:
    """(kernel signatures loaded from the disk cache, compiled, the CPU name code is generated for, whether every
    kernel has a disk cache) so far.

    numba counts a cache hit or miss per signature as a kernel is first needed; a kernel called only from others
    (fill_words) is compiled when they are, and not even loaded when they come from the cache."""
    loaded = sum(sum(dispatcher.stats.cache_hits.values()) for dispatcher in _cached)
    compiled = sum(sum(dispatcher.stats.cache_misses.values()) for dispatcher in _cached)
    compiled += sum(len(dispatcher.overloads) for dispatcher in _uncached)
    return loaded, compiled, config.CPU_NAME or get_host_cpu_name(), not _uncached


def forget_disk_cache() -> None:
    """Empty every kernel's on-disk cache index, so that its next compile starts afresh and rewrites the cache.

    numba unpickles its cache files and lets any error (a truncated or garbled file) out of every call of the
    kernel, forever: this is the way out.
    """
    for dispatcher in _cached:
        dispatcher._cache.flush()  # numba's own reset: an empty index; stale data files are overwritten later


def inline(function: F) -> F:
    """A helper the kernels call per element: inlined into them in numba's IR (a call would stop vectorising)."""
    return njit(inline="always", fastmath=False, error_model="numpy")(function)  # type: ignore[no-any-return]


@intrinsic
def mul_wide(typingctx: Any, a: Any, b: Any) -> Any:
    """(hi, lo) of the full 128-bit product of two uint64: one ``mul`` instruction on x86-64 and arm64."""
    signature = types.UniTuple(types.uint64, 2)(types.uint64, types.uint64)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        product = builder.mul(builder.zext(args[0], _I128), builder.zext(args[1], _I128))
        low = builder.trunc(product, _I64)
        high = builder.trunc(builder.lshr(product, ir.Constant(_I128, 64)), _I64)
        return context.make_tuple(builder, sig.return_type, (high, low))

    return signature, codegen


@intrinsic
def f64_bits(typingctx: Any, x: Any) -> Any:
    """The IEEE 754 encoding of a float64, as uint64 (C's memcpy / NumPy's ``view``)."""
    signature = types.uint64(types.float64)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        return builder.bitcast(args[0], _I64)

    return signature, codegen


@intrinsic
def bits_f64(typingctx: Any, bits: Any) -> Any:
    """The float64 whose encoding is ``bits``."""
    signature = types.float64(types.uint64)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        return builder.bitcast(args[0], ir.DoubleType())

    return signature, codegen


@intrinsic
def trailing_zeros(typingctx: Any, word: Any) -> Any:
    """The index of the lowest set bit of a nonzero uint64 (``tzcnt``; LLVM's cttz): a loop over set bits visits
    each in a few instructions, where testing every bit costs a branch per bit."""
    signature = types.uint64(types.uint64)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 1))

    return signature, codegen


@intrinsic
def fma(typingctx: Any, a: Any, b: Any, c: Any) -> Any:
    """a * b + c rounded once (C's fma / fmaf, LLVM's llvm.fma), in the type of `a`: float32 or float64.

    Exact on every CPU (a single correctly rounded operation), unlike a contraction left to the compiler."""
    if not (a == b == c and isinstance(a, types.Float)):
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        return builder.fma(*args)

    return a(a, b, c), codegen


@intrinsic
def f32_bits(typingctx: Any, x: Any) -> Any:
    """The IEEE 754 encoding of a float32, as int32: numba widens it to int64 in arithmetic, where a uint32 would
    become uint64 and turn any mix with a signed integer into float64."""
    signature = types.int32(types.float32)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        return builder.bitcast(args[0], _I32)

    return signature, codegen


@intrinsic
def bits_f32(typingctx: Any, bits: Any) -> Any:
    """The float32 whose encoding is the low 32 bits of the integer ``bits`` (numba widens small integers)."""
    if not isinstance(bits, types.Integer) or bits.bitwidth < 32:
        return None

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        value = args[0]
        if value.type.width > 32:
            value = builder.trunc(value, _I32)
        return builder.bitcast(value, ir.FloatType())

    return types.float32(bits), codegen
