"""The HTTP API (Corrosion's endpoints and JSON shapes, docs/api.md) on starlette and
hypercorn's trio worker. Every route reaches the node through ``Agent``'s public methods only;
`corrosion_py.runner` serves it beside the agent."""
