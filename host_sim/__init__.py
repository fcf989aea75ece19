"""The CPython host agent: Linux semantics, Linux collectors, replay and cross-check."""
