"""Cutting a committed version into pieces that fit a byte budget: contiguous seq ranges that
cover the whole version, each piece within the budget once encoded, and a change larger than
the budget in a piece of its own."""

from __future__ import annotations

import itertools
from pathlib import Path

from corrosion_py.replication.chunking import pieces
from corrosion_py.store.store import Store
from corrosion_py.wire.codec import encode

SCHEMA = "CREATE TABLE machines (id TEXT PRIMARY KEY NOT NULL, app TEXT, region TEXT);\n"


def test_pieces_cover_the_version_and_fit_the_budget(tmp_path: Path) -> None:
    (tmp_path / "schema.sql").write_text(SCHEMA)
    with Store.open(tmp_path / "a.db", schema_paths=[tmp_path / "schema.sql"]) as a:
        stmts = [
            ("INSERT INTO machines (id, app, region) VALUES (?, ?, ?)", [f"m{i}", "x" * 50, "ams"])
            for i in range(40)
        ]
        cs = a.transaction_sync(stmts).changeset
        assert cs is not None
        cut = list(pieces(cs, budget=600))
        assert len(cut) > 3
        assert all(len(encode(p, cluster_id=2**16 - 1)) <= 600 for p in cut)
        assert cut[0].seqs[0] == 0 and cut[-1].seqs[1] == cs.last_seq
        for prev, nxt in itertools.pairwise(cut):
            assert prev.seqs[1] + 1 == nxt.seqs[0]
        assert sorted(c.seq for p in cut for c in p.changes) == sorted(c.seq for c in cs.changes)
        # a single value larger than the budget still gets a piece of its own
        big = a.transaction_sync([("UPDATE machines SET app = ? WHERE id = 'm1'", ["y" * 5000])])
        assert big.changeset is not None
        assert [len(p.changes) for p in pieces(big.changeset, budget=600)] == [1]
