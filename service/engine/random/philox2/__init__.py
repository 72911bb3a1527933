"""philox-v2's stream, transforms and kernels (docs/philox-v2.md); `random.rngs.philox_v2` is its registry entry."""
