"""trio transports: the UDP endpoint shared by membership and broadcast, with fault injection."""
