"""The registered RNGs, one module each exposing `RNG` (a `random.rng.Rng`); the registry finds them all."""
