"""Initialisation schemes: the registry (name -> parameters and build rule), the distributions they reduce to, and
the fans and gains they read."""
