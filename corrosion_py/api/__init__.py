"""The HTTP API (Corrosion's endpoints and JSON shapes, docs/api.md), served by our own HTTP/1.1
server on h11 and trio. Every route reaches the node through ``Agent``'s public methods only;
`corrosion_py.runner` serves it beside the agent."""
