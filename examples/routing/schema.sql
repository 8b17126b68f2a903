-- A routing table in the spirit of Fly.io's proxy: which machines each app has, where they run
-- and whether they can take requests. Shared by `make demo` and the examples.
--
-- Each worker (the host that runs machines) writes only the rows of its own machines, so
-- conflicts are rare; when two nodes do write the same cell, every node keeps the same winner.
-- Replicated tables need a primary key, and a NOT NULL column needs a DEFAULT.

CREATE TABLE apps (
    name TEXT PRIMARY KEY NOT NULL,
    org TEXT NOT NULL DEFAULT ''
);

CREATE TABLE machines (
    id TEXT PRIMARY KEY NOT NULL,
    app TEXT NOT NULL DEFAULT '',
    worker TEXT NOT NULL DEFAULT '',      -- the host that runs it, and the row's owner
    region TEXT NOT NULL DEFAULT '',
    address TEXT NOT NULL DEFAULT '',     -- where the proxy forwards requests
    state TEXT NOT NULL DEFAULT 'created' -- created, started, stopping, stopped, ...
);

CREATE INDEX machines_app ON machines (app);
