"""The HTTP API (Corrosion's endpoints and JSON shapes, docs/api.md) on starlette and
hypercorn's trio worker; the subscription endpoints stream from `corrosion_py.subs`."""
