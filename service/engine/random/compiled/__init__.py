"""numba kernels computing the bits of the NumPy reference in `service.engine.random` (and nothing else)."""
