"""The package's version: a leaf, so that what records it (the tables' provenance, ``--version``)
imports it without importing the public face (:mod:`alfcache`)."""

__version__ = "0.1.0"
