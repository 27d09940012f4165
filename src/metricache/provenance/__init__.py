"""Provenance: value ids, code fingerprints, staleness and the dependency graph.

- :mod:`.values`: content hashes of stored values (computed while written);
- :mod:`.fingerprint`: what a metric's code is, as named parts;
- :mod:`.staleness`: whether a stored entry is still what the code computes, and why;
- :mod:`.graph`: the dependency graph of stored entries (Mermaid, DOT, SVG);
- :mod:`.status`: a table of every stored entry and its status.
"""
