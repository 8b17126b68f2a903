"""Typed exceptions shared by every layer; the API and CLI map them to status codes and messages."""


class CorrosionError(Exception):
    """Base class of every error corrosion_py raises on purpose."""


class CrdtError(CorrosionError):
    """An error of the CRR engine."""


class IncompatibleTableError(CrdtError):
    """A table breaks one of cr-sqlite's rules and cannot become (or stay) a CRR."""


class UnknownTableError(CrdtError):
    """A change names a table that is not a CRR here."""


class UnknownColumnError(CrdtError):
    """A change names a column the CRR does not have."""


class MalformedPkError(CrdtError):
    """A packed primary key does not decode, or has the wrong number of values."""


class MalformedChangeError(CrdtError):
    """A change row has a field of the wrong type or range (site id, versions, cl, seq)."""


class ClockLimitError(CrdtError):
    """A local transaction would need a version above the engine's limit (``MAX_CLOCK``)."""


class TransactionError(CrdtError):
    """A transaction was used in a way the engine does not allow (e.g. no open transaction)."""


class StoreError(CorrosionError):
    """An error of the node store."""


class StatementError(StoreError):
    """A statement of a local transaction failed; the whole transaction was rolled back."""

    def __init__(self, index: int, sql: str, message: str) -> None:
        super().__init__(f"statement {index} failed: {message} (in: {sql})")
        self.index = index
        self.sql = sql
        self.message = message
