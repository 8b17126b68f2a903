"""The node store: schema files, the single writer, transactions, bookkeeping and sync state."""
