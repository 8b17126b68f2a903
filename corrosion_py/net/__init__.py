"""All of a node's network I/O, in trio: the gossip port (``port``: UDP endpoint and TCP
listeners on one number, and the routers that share them out), the UDP endpoint with fault
injection and sealing (``udp``, ``faults``, ``secure``), framed streams (``framed``), and the
shells that drive the sans-IO cores over them: SWIM membership and push-pull (``membership``,
``pushpull``), changeset broadcast (``broadcast``), sync sessions (``sync_server``,
``sync_client``) and the periodic sync loop (``sync_loop``)."""
