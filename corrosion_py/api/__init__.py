"""The HTTP API (Corrosion's endpoints and shapes, reference/corrosion.md §2) on starlette and
hypercorn's trio worker; the subscription endpoints stream from `corrosion_py.subs`."""
