"""philox-v2's standard normal: a 128-layer ziggurat (Marsaglia and Tsang 2000, in Doornik's 2005 form, with the
layer drawn from bits of its own), its tables, and the NumPy reference the kernels (`philox2.kernels`) are tested
against. docs/philox-v2.md section 7 is the contract; this is its reference.

The density f(x) = exp(-x^2 / 2) on x >= 0 is covered by LAYERS strips of equal area v: strip j (1 <= j < 128)
is [0, X[j]] x [F[j], F[j + 1]] with F[j] = f(X[j]); the base strip 0 is [0, X[0]] x [0, F[1]], X[0] = v / f(r),
standing for the rectangle [0, r] x [0, f(r)] plus the tail beyond r (X[1] = r), of area v too. A uniform point of
a uniform strip lies under f with probability ~0.97 at once: x = u X[j] < X[j + 1] (the fast path, a table lookup
and a multiply). The others are redone from the element's retry stream (`Stream.retry_blocks`): a wedge point
(X[j + 1] <= x < X[j]) is kept if a uniform height y in the strip lies under f(x), a base-strip point draws from
the tail by Marsaglia's (1964) exact method, and a rejected point starts over with a new strip.

The tables are computed by `compute_tables` (mpmath at 60 significant digits; r is the root of the closing
condition F[127] + v / X[127] = 1) and rounded to the nearest float64: they are shipped as those float64 values,
in hex, here and in docs/vectors/philox-v2.json, so that no port needs mpmath or exp. Rounding them moves each
strip's area by at most 1e-14 of v: the law is the normal's to that relative precision (far below what 2^64
draws could detect).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from service.engine.random import detmath

LAYERS = 128
_LAYER = np.uint64(LAYERS - 1)
_S7 = np.uint64(7)
_S8 = np.uint64(8)
_S12 = np.uint64(12)
_S32 = np.uint64(32)
_ONE = np.uint64(1)
# X[0..128] and F[0..128] (X[128] = 0, F[128] = 1; F[0] = 0 is never read: the base strip has no wedge).
X_HEX = (
    "0x1.db4668fe7d167p+1",
    "0x1.b8a7c476d1741p+1",
    "0x1.9c8e0c7c7f35ep+1",
    "0x1.8aa73e440e862p+1",
    "0x1.7d45eb36e9ff4p+1",
    "0x1.7279dd4ac2679p+1",
    "0x1.695c2be68d3e4p+1",
    "0x1.616dff7c8dab3p+1",
    "0x1.5a61edf7e73f4p+1",
    "0x1.540520129e8c8p+1",
    "0x1.4e3456b0e1da8p+1",
    "0x1.48d61806d430cp+1",
    "0x1.43d75b60bac8dp+1",
    "0x1.3f29848d395fep+1",
    "0x1.3ac11b8e1e839p+1",
    "0x1.3694f3a3721bap+1",
    "0x1.329d9725e1358p+1",
    "0x1.2ed4df8097554p+1",
    "0x1.2b35aa5ebcda5p+1",
    "0x1.27bba2b5d9b7dp+1",
    "0x1.246317a6b3231p+1",
    "0x1.2128dd36bbd01p+1",
    "0x1.1e0a342cee675p+1",
    "0x1.1b04b731f48d4p+1",
    "0x1.18164be0bf8c9p+1",
    "0x1.153d16d455057p+1",
    "0x1.1277720181096p+1",
    "0x1.0fc3e4d95cda5p+1",
    "0x1.0d211dd288ac4p+1",
    "0x1.0a8ded0ec1159p+1",
    "0x1.08093fe3e1aa9p+1",
    "0x1.05921d1c4b0b9p+1",
    "0x1.0327a1cc4a836p+1",
    "0x1.00c8fea16f933p+1",
    "0x1.fceaeb2ca0ee2p+0",
    "0x1.f858aff317ac8p+0",
    "0x1.f3da09745b605p+0",
    "0x1.ef6dcddc7807dp+0",
    "0x1.eb12e914817afp+0",
    "0x1.e6c85a8495b0dp+0",
    "0x1.e28d331c61c36p+0",
    "0x1.de609397db2b3p+0",
    "0x1.da41aaf794b3cp+0",
    "0x1.d62fb5257b279p+0",
    "0x1.d229f9bfe95c7p+0",
    "0x1.ce2fcb05f3115p+0",
    "0x1.ca4084e08c207p+0",
    "0x1.c65b8c04d5d84p+0",
    "0x1.c2804d2c6531dp+0",
    "0x1.beae3c60c7179p+0",
    "0x1.bae4d457e8092p+0",
    "0x1.b72395df55593p+0",
    "0x1.b36a075492a98p+0",
    "0x1.afb7b428f83acp+0",
    "0x1.ac0c2c6fbfe60p+0",
    "0x1.a8670475107fbp+0",
    "0x1.a4c7d45cfb2a5p+0",
    "0x1.a12e37c97caa0p+0",
    "0x1.9d99cd86aeea8p+0",
    "0x1.9a0a373c6d3ccp+0",
    "0x1.967f1924c0e62p+0",
    "0x1.92f819c67bdfdp+0",
    "0x1.8f74e1b375764p+0",
    "0x1.8bf51b49e8281p+0",
    "0x1.8878727879e86p+0",
    "0x1.84fe948480027p+0",
    "0x1.81872fd216669p+0",
    "0x1.7e11f3ada7506p+0",
    "0x1.7a9e9016840d7p+0",
    "0x1.772cb58a3242ap+0",
    "0x1.73bc14d01277fp+0",
    "0x1.704c5ec504e8fp+0",
    "0x1.6cdd4426b0a02p+0",
    "0x1.696e755e0eb23p+0",
    "0x1.65ffa248d7f43p+0",
    "0x1.62907a016eac0p+0",
    "0x1.5f20aaa4d7638p+0",
    "0x1.5bafe1164c044p+0",
    "0x1.583dc8bfea848p+0",
    "0x1.54ca0b4ff476ap+0",
    "0x1.5154507206658p+0",
    "0x1.4ddc3d839cb58p+0",
    "0x1.4a6175432745fp+0",
    "0x1.46e39778d4ba1p+0",
    "0x1.4362409821672p+0",
    "0x1.3fdd0959138fbp+0",
    "0x1.3c538647e5b53p+0",
    "0x1.38c54749af146p+0",
    "0x1.3531d71460289p+0",
    "0x1.3198ba9823477p+0",
    "0x1.2df97057dd75fp+0",
    "0x1.2a536fae26375p+0",
    "0x1.26a627fb9231dp+0",
    "0x1.22f0ffba96ce9p+0",
    "0x1.1f33537495bfap+0",
    "0x1.1b6c7492bde7ap+0",
    "0x1.179ba80458345p+0",
    "0x1.13c024b2bbdffp+0",
    "0x1.0fd911b972d18p+0",
    "0x1.0be58456f2afcp+0",
    "0x1.07e47d879726ep+0",
    "0x1.03d4e7390f210p+0",
    "0x1.ff6b21ffe30ecp-1",
    "0x1.f70a5866ad189p-1",
    "0x1.ee848e954b85cp-1",
    "0x1.e5d6909f34423p-1",
    "0x1.dcfccc51a7480p-1",
    "0x1.d3f340dd86c6bp-1",
    "0x1.cab56ac6833a5p-1",
    "0x1.c13e2b012d149p-1",
    "0x1.b787a7c4f44a4p-1",
    "0x1.ad8b25067d385p-1",
    "0x1.a340d1bad0391p-1",
    "0x1.989f85c72c985p-1",
    "0x1.8d9c6a9d0cf67p-1",
    "0x1.822a858ac5ecap-1",
    "0x1.763a1600c1764p-1",
    "0x1.69b7b213c3f64p-1",
    "0x1.5c8afdbecef6ep-1",
    "0x1.4e94c08bd4d78p-1",
    "0x1.3fabee18d682fp-1",
    "0x1.2f98d6bb0e73ap-1",
    "0x1.1e0ce6b54ec53p-1",
    "0x1.0a936da5942d2p-1",
    "0x1.e8e576e3830fap-2",
    "0x1.b4c8fecd63b02p-2",
    "0x1.73949183add9dp-2",
    "0x1.16db47dfb32bdp-2",
    "0x0.0p+0",
)
F_HEX = (
    "0x0.0p+0",
    "0x1.5de9e33733182p-9",
    "0x1.6ba8b0ffc2db8p-8",
    "0x1.1a9b6b3fcb829p-7",
    "0x1.83f4bed1a0f0bp-7",
    "0x1.f100847656bf0p-7",
    "0x1.309cee4e1477cp-6",
    "0x1.6a23fa9d6c22fp-6",
    "0x1.a4f57a25e8f32p-6",
    "0x1.e0f951d58f849p-6",
    "0x1.0f0e539c938c0p-5",
    "0x1.2e282b7255da2p-5",
    "0x1.4dc3fcbda5a08p-5",
    "0x1.6ddc9dd20b8c5p-5",
    "0x1.8e6db483cac0fp-5",
    "0x1.af738c17b4ea1p-5",
    "0x1.d0eaf633a6b8ap-5",
    "0x1.f2d13368cf93fp-5",
    "0x1.0a91f0918dae5p-4",
    "0x1.1bf075c21538ap-4",
    "0x1.2d834113457cbp-4",
    "0x1.3f49878976d30p-4",
    "0x1.514297b246583p-4",
    "0x1.636dd69e998c6p-4",
    "0x1.75cabd60f402ap-4",
    "0x1.8858d6f55ed84p-4",
    "0x1.9b17be7e73957p-4",
    "0x1.ae071dc7bf93dp-4",
    "0x1.c126ac0128a82p-4",
    "0x1.d4762ca995a18p-4",
    "0x1.e7f56ea118c48p-4",
    "0x1.fba44b5c61816p-4",
    "0x1.07c1531a357f8p-3",
    "0x1.11c835e726135p-3",
    "0x1.1be6c8cbe5a43p-3",
    "0x1.261d0aaaf7624p-3",
    "0x1.306afe619efedp-3",
    "0x1.3ad0aa9de455dp-3",
    "0x1.454e19baadb54p-3",
    "0x1.4fe359a145658p-3",
    "0x1.5a907bafba9e3p-3",
    "0x1.655594a3a5050p-3",
    "0x1.7032bc88e51fap-3",
    "0x1.7b280eac0c6f7p-3",
    "0x1.8635a99025d7bp-3",
    "0x1.915baee7a2dddp-3",
    "0x1.9c9a43903cae2p-3",
    "0x1.a7f18f91a0d6ap-3",
    "0x1.b361be1ec9a67p-3",
    "0x1.beeafd99e93b6p-3",
    "0x1.ca8d7f9ad4b43p-3",
    "0x1.d64978f7e2d92p-3",
    "0x1.e21f21d136fa3p-3",
    "0x1.ee0eb59e75db3p-3",
    "0x1.fa18733ee75d5p-3",
    "0x1.031e4e8606256p-2",
    "0x1.093dbc775a1f7p-2",
    "0x1.0f6aa83b52201p-2",
    "0x1.15a5387a71a06p-2",
    "0x1.1bed95cc633cbp-2",
    "0x1.2243eac7ee400p-2",
    "0x1.28a864146d917p-2",
    "0x1.2f1b307cdcc47p-2",
    "0x1.359c810492f8ep-2",
    "0x1.3c2c88fdc65e7p-2",
    "0x1.42cb7e21f69bfp-2",
    "0x1.497998ac6017ap-2",
    "0x1.503713769e39cp-2",
    "0x1.57042c17a74d2p-2",
    "0x1.5de1230551a9bp-2",
    "0x1.64ce3bb89770ep-2",
    "0x1.6bcbbcd4d4694p-2",
    "0x1.72d9f052408ddp-2",
    "0x1.79f923abf1d11p-2",
    "0x1.8129a811b882ep-2",
    "0x1.886bd29e33e65p-2",
    "0x1.8fbffc918800bp-2",
    "0x1.972683912ac18p-2",
    "0x1.9e9fc9ed4d931p-2",
    "0x1.a62c36ec797eap-2",
    "0x1.adcc371e07b84p-2",
    "0x1.b5803cb437071p-2",
    "0x1.bd48bfe6b8a90p-2",
    "0x1.c5263f5ead9fcp-2",
    "0x1.cd1940ad30932p-2",
    "0x1.d52250cdb191ep-2",
    "0x1.dd4204b59916bp-2",
    "0x1.e578f9f2e03a3p-2",
    "0x1.edc7d75b8e9bep-2",
    "0x1.f62f4dd05d60fp-2",
    "0x1.feb019151c56ep-2",
    "0x1.03a58060f304ap-1",
    "0x1.08006ca85ac6ap-1",
    "0x1.0c6942a5c900fp-1",
    "0x1.10e07b50236c1p-1",
    "0x1.1566980fc6949p-1",
    "0x1.19fc2397562a2p-1",
    "0x1.1ea1b2d9fe534p-1",
    "0x1.2357e62437dc2p-1",
    "0x1.281f6a5d33891p-1",
    "0x1.2cf8fa7868c02p-1",
    "0x1.31e5612075dadp-1",
    "0x1.36e57aa6a89b9p-1",
    "0x1.3bfa3745495cdp-1",
    "0x1.41249dc6579c8p-1",
    "0x1.4665cea512cc7p-1",
    "0x1.4bbf07c6d4684p-1",
    "0x1.5131a8eff8ed9p-1",
    "0x1.56bf3924ad864p-1",
    "0x1.5c696d34a27fdp-1",
    "0x1.62322fc5a83b3p-1",
    "0x1.681bab4ed2ff3p-1",
    "0x1.6e2856a01cb2ap-1",
    "0x1.745b04d03ea40p-1",
    "0x1.7ab6f9c66e43bp-1",
    "0x1.81400521b52b5p-1",
    "0x1.87faa61a8cfa0p-1",
    "0x1.8eec3c5bda1f6p-1",
    "0x1.961b4c1b19f30p-1",
    "0x1.9d8fdfaee4af6p-1",
    "0x1.a55418112ba08p-1",
    "0x1.ad750b7275dd0p-1",
    "0x1.b6042cf926211p-1",
    "0x1.bf19b6813348bp-1",
    "0x1.c8d923fa0897bp-1",
    "0x1.d37a74ffe486ap-1",
    "0x1.df6071937f4c9p-1",
    "0x1.ed5cf061144dep-1",
    "0x1.0000000000000p+0",
)
X = np.array([float.fromhex(h) for h in X_HEX])
F = np.array([float.fromhex(h) for h in F_HEX])
R = X[1]  # where the tail begins
# x = (m + 0.5) * SCALE[j], m the draw's 24 (32-bit draws) or 52 (64-bit draws) mantissa bits: X[j] * 2^-bits, exact.
SCALE_NARROW = X[:LAYERS] * 2.0**-24
SCALE_WIDE = X[:LAYERS] * 2.0**-52


def _fast_limits(scale: NDArray[np.float64], bits: int) -> NDArray[np.uint64]:
    """K[j]: the least m < 2^bits with (m + 0.5) * scale[j] >= X[j + 1] (2^bits if none). x grows with m, so the
    fast path's test x < X[j + 1] is m < K[j]: the kernels test the draw's bits against K without computing x."""
    lo, hi = np.zeros(LAYERS, np.int64), np.full(LAYERS, 1 << bits, np.int64)
    while (active := lo < hi).any():
        middle = (lo + hi) // 2
        above = (middle.astype(np.float64) + 0.5) * scale >= X[1:]
        hi = np.where(active & above, middle, hi)
        lo = np.where(active & ~above, middle + 1, lo)
    return lo.astype(np.uint64)


LIMIT_NARROW = _fast_limits(SCALE_NARROW, 24)
LIMIT_WIDE = _fast_limits(SCALE_WIDE, 52)
# |z| cannot exceed the tail's r + (-log of the least retry uniform, 2^-53) / r.
MAX_Z = R + 53.0 * 0.6931471805599453 / R


def compute_tables(digits: int = 60) -> tuple[list[float], list[float]]:
    """X[0..128], F[0..128] from the definition, at `digits` significant digits, rounded to the nearest float64.

    v(r) = r f(r) + integral_r^inf f = r f(r) + sqrt(pi / 2) erfc(r / sqrt(2)); X[0] = v / f(r), X[1] = r,
    F[1] = f(r); F[j + 1] = F[j] + v / X[j] and X[j + 1] = sqrt(-2 ln F[j + 1]) for j = 1 .. 126; X[128] = 0,
    F[128] = 1; r is the root near 3.4426 of F[127] + v / X[127] - 1 (the top strip closes at f(0) = 1).
    Needs mpmath (a test, not the engine, runs it)."""
    import mpmath

    mp = mpmath.mp.clone() if hasattr(mpmath.mp, "clone") else mpmath.mp
    mp.dps = digits

    def f(x: Any) -> Any:
        return mp.exp(-x * x / 2)

    def strips(r: Any) -> tuple[Any, list[Any], list[Any]]:
        v = r * f(r) + mp.sqrt(mp.pi / 2) * mp.erfc(r / mp.sqrt(2))
        xs, fs = [v / f(r), r], [mp.mpf(0), f(r)]
        for j in range(1, LAYERS - 1):
            fs.append(fs[j] + v / xs[j])
            xs.append(mp.sqrt(-2 * mp.log(fs[j + 1])))
        return v, xs, fs

    def closing(r: Any) -> Any:
        v, xs, fs = strips(r)
        return fs[LAYERS - 1] + v / xs[LAYERS - 1] - 1

    _, xs, fs = strips(mp.findroot(closing, mp.mpf("3.4426")))
    return [float(x) for x in xs] + [0.0], [float(y) for y in fs] + [1.0]


def uniform(word: NDArray[np.uint64]) -> NDArray[np.float64]:
    """A retry stream's 64-bit word as a uniform in (0, 1): ((W >> 12) + 0.5) * 2^-52."""
    return ((word >> _S12).astype(np.float64) + 0.5) * 2.0**-52


def first_try(draw: NDArray[np.uint64], wide: bool) -> tuple[NDArray[np.int64], NDArray[np.bool_], NDArray[np.float64]]:
    """(strip j, negative, x) of a draw: j its low 7 bits, the sign bit 7, m the top 24 (32-bit draw) or 52 (64-bit
    draw, bits 8 to 11 unused) bits, x = (m + 0.5) * X[j] * 2^-24 or 2^-52."""
    j = (draw & _LAYER).astype(np.int64)
    negative = ((draw >> _S7) & _ONE) == _ONE
    m = (draw >> _S12) if wide else (draw >> _S8)
    return j, negative, (m.astype(np.float64) + 0.5) * (SCALE_WIDE if wide else SCALE_NARROW)[j]


def standard_normal(
    stream: Any, index: NDArray[np.int64], draws: NDArray[np.uint64], wide: bool
) -> NDArray[np.float64]:
    """z of the elements `index` of `stream` (a `philox2.stream.Stream`), whose draws are `draws`: the fast path for
    all, the first retry block's wedge test and second try for those it rejects (vectorised), the rest (about 1 in
    1,100) one by one (`redo`)."""
    j, negative, x = first_try(draws, wide)
    todo = np.flatnonzero(~(x < X[j + 1]))
    if todo.size:
        block = stream.retry_blocks(index[todo], 0)
        jt, xt = j[todo], x[todo]
        y = F[jt] + uniform((block[:, 0] << _S32) | block[:, 1]) * (F[jt + 1] - F[jt])
        rejected = (jt > 0) & ~(-2.0 * detmath.log(y) > xt * xt)  # a wedge point above f: the second try, R[1]
        j2, negative2, x2 = first_try((block[:, 2] << _S32) | block[:, 3], wide=True)
        second = rejected & (x2 < X[j2 + 1])
        x[todo[second]], negative[todo[second]] = x2[second], negative2[second]
        for e in todo[(jt == 0) | (rejected & ~second)]:
            x[e], negative[e] = redo(stream, int(index[e]), int(j[e]), bool(negative[e]), float(x[e]))
    return np.where(negative, -x, x)


def retry_word(stream: Any, i: int, k: int) -> np.uint64:
    """Element i's retry word R[k]: words 2(k mod 2) and 2(k mod 2) + 1 of its retry block floor(k / 2), as one
    64-bit word (high, low)."""
    block = stream.retry_blocks(np.array([i], dtype=np.int64), k // 2)[0]
    return np.uint64((block[2 * (k % 2)] << _S32) | block[2 * (k % 2) + 1])


def redo(stream: Any, i: int, j: int, negative: bool, x: float) -> tuple[float, bool]:
    """(x, negative) of element i whose first try (j, negative, x) left the fast path: the whole algorithm, step
    by step, drawing the element's retry words R[0], R[1], ... in order."""
    k = 0

    def next_word() -> NDArray[np.uint64]:
        nonlocal k
        k += 1
        return np.array([retry_word(stream, i, k - 1)])

    def log_uniform() -> float:
        return float(detmath.log(uniform(next_word()))[0])

    while not x < X[j + 1]:
        if j == 0:  # beyond r: Marsaglia's tail method
            while True:
                a = -log_uniform() / R
                b = -log_uniform()
                if b + b > a * a:
                    return R + a, negative
        y = F[j] + float(uniform(next_word())[0]) * (F[j + 1] - F[j])
        if -2.0 * float(detmath.log(np.array([y]))[0]) > x * x:
            break  # under f in the wedge
        jj, neg, xx = first_try(next_word(), wide=True)  # rejected: a new try, from a whole retry word
        j, negative, x = int(jj[0]), bool(neg[0]), float(xx[0])
    return x, negative
