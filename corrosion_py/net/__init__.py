"""All of a node's network I/O, in trio: the gossip port (UDP endpoint with fault injection and
sealing, TCP listeners), the shells that drive the sans-IO cores over it (SWIM membership and
push-pull, changeset broadcast, sync sessions and the periodic sync loop)."""
