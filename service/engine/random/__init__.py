"""The portable bit contract: random streams, the words-to-variates transforms and the elementary functions they
use, with the numba kernels that compute the same bits faster (`compiled/`). docs/reproducibility.md has the text."""
