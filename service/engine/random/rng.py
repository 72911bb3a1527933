"""A random algorithm (an `rng` id): the interface every entry of the registry (`random/rngs/`) implements.

An entry is the whole bit contract of its id: how a seed and a tensor's name become a stream (key derivation),
the stream itself, and how each distribution turns it into values (the transforms). Its attributes say what the
rest of the engine may do with it, so adding an algorithm touches nothing but its own module (and its contract
document):

* `random_access`: any range of a tensor is computable on its own. Counter-based streams are; a sequential,
  stateful generator (PyTorch's CPU one) is not: slices, chunks and parallel fills then cost the whole tensor,
  which the plan computes once (as for orthogonal).
* `keyed_by`: "tensor" gives each tensor its own stream, keyed by (seed, name): its bits do not depend on the
  other tensors of a request nor on their order. "request" is one stream per request consumed tensor after
  tensor in the order given to `streams` (a framework's construction order), so a tensor's bits depend on every
  tensor drawn before it: `streams` sees every draw of the request (name, distribution, shape, dtype) at once,
  including `discarded` ones: draws a framework makes and later overwrites (its streams advance over them; the
  engine never samples them).

A sequential generator's bits can depend on the output dtype (PyTorch's uniform takes one 32-bit word per
float32 and two per float64), so draws and `sample` carry it; counter-based entries ignore it.

The engine only ever passes a tensor's stream back to the entry that made it: what a stream is (a key, a
generator's state) is the entry's business.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from service.engine.schemes.distributions import Distribution
    from service.engine.schemes.registry import Built, Context, Scheme

KeyedBy = Literal["tensor", "request"]
LATEST_METADATA = 2
TensorStream = Any  # whatever the entry's `streams` returns; only that entry reads it


@dataclass(frozen=True)
class Draw:
    """What one tensor takes from the rng. A discarded draw is one a framework makes and then overwrites
    (MultiheadAttention's out_proj.bias, a default that a rule replaces): a request-keyed stream advances over its
    values, which are never output."""

    name: str
    distribution: Distribution
    shape: tuple[int, ...]
    dtype: str = "float32"  # the output dtype's name (dtypes.DTYPES)
    discarded: bool = False  # consumed from the stream, never output


class Rng(ABC):
    """One random algorithm (see the module docstring for the attributes)."""

    id: ClassVar[str]
    random_access: ClassVar[bool]
    keyed_by: ClassVar[KeyedBy]
    contract: ClassVar[str]  # the document that specifies its bits, relative to the repository
    # The metadata written with its tensors, frozen with the id: a response's bytes include it. 1 reports only the
    # fans a scheme read (philox-v1's, kept byte for byte); 2 reports both fans of the shape and which were read.
    metadata_version: ClassVar[int] = LATEST_METADATA

    @abstractmethod
    def streams(self, seed: int, draws: Sequence[Draw]) -> list[TensorStream]:
        """One stream per draw of a request (discarded ones included, their streams unused), for tensors drawn in
        the order of `draws`. Each stream gives the same values however often and in whatever order the engine
        samples it."""

    def build(self, scheme: Scheme, context: Context) -> Built:
        """The scheme's distribution under this rng: the scheme's own rule, unless the algorithm reproduces a
        framework that computes the parameters with other roundings."""
        return scheme.build(context)

    def kernels(self) -> list[tuple[str, Any, tuple[Any, ...]]]:
        """(name, numba dispatcher, argument types) of every compiled kernel the entry calls: the warm-up and the
        image build (`initserve kernels`) compile them by signature, without running them."""
        return []

    def metadata(self, distribution: Distribution) -> dict[str, Any]:
        """What a response says about this rng besides its id (nothing for philox-v1, whose bytes are pinned)."""
        return {}

    def prepare(self, distribution: Distribution, dtype: np.dtype) -> None:
        """Refuse (InitError) a distribution this rng cannot generate in `dtype`; called once per tensor when its
        request is planned, so that no error surfaces once a response has begun. Accepts everything by default."""
        return None

    @abstractmethod
    def sample(
        self, distribution: Distribution, stream: TensorStream, shape: tuple[int, ...], dtype: np.dtype
    ) -> NDArray:
        """The whole tensor's values, flat row-major: float64 (rounded to `dtype` by dtypes.round_to), or already
        in `dtype` where the entry computes in it (no float64 copy of a large tensor)."""

    @abstractmethod
    def generate(
        self,
        distribution: Distribution,
        stream: TensorStream,
        shape: tuple[int, ...],
        start: int,
        stop: int,
        dtype: np.dtype,
    ) -> NDArray:
        """Flat elements [start, stop) in `dtype` (called only where both the entry and the distribution have
        random access)."""

    @abstractmethod
    def generate_runs(
        self,
        distribution: Distribution,
        stream: TensorStream,
        shape: tuple[int, ...],
        starts: NDArray[np.int64],
        length: int,
        dtype: np.dtype,
    ) -> NDArray:
        """Flat elements [s, s + length) for each s of `starts`, one run after another, in `dtype` (as `generate`)."""
