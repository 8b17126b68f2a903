"""corrosion_py: a gossip-replicated CRDT state store on SQLite.

The CRR engine (`corrosion_py.crdt`) is the foundation; the store, membership, gossip, API and
CLI are built on top of it (see docs/architecture.md).
"""

__version__ = "0.1.0"
