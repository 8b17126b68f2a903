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
        # lone surrogates (a JSON escape, a non-UTF-8 argv) are spelled out so the message
        # can always be encoded, e.g. into an HTTP answer
        shown = sql.encode("utf-8", "backslashreplace").decode()
        super().__init__(f"statement {index} failed: {message} (in: {shown})")
        self.index = index
        self.sql = sql
        self.message = message


class GossipKeyError(CorrosionError):
    """Gossip keys are missing, unreadable or refused (the message names the file and line,
    never key material), or a key change the agent cannot make."""


class QueryError(StoreError):
    """A read-only query was refused or failed (bad SQL, an internal table or engine function,
    text that is not UTF-8); nothing was changed."""


class StorageFault(StoreError):
    """The database file failed under a write: the disk is full, an I/O error, a read-only file
    (``transient``: the same write may succeed later, nothing was written), or corruption
    (writes stay stopped until the database is restored). The node keeps running and reading."""

    def __init__(self, kind: str, path: object, detail: str) -> None:
        super().__init__(f"write failed: {describe_fault(kind, path, detail)}")
        self.kind = kind
        self.path = path
        self.detail = detail

    @property
    def transient(self) -> bool:
        return self.kind != "corrupt"


class UnusableDatabase(StoreError):
    """A node refused to open its database file (empty, not SQLite, corrupt, or its integrity
    check did not finish in time); nothing was changed."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"cannot open the database {path}: {reason}")
        self.path = path
        self.reason = reason


def describe_fault(kind: str, path: object, detail: str) -> str:
    """One line for an operator: what failed and what to do."""
    if kind == "corrupt":
        return (
            f"the database {path} is corrupt ({detail}); writes are stopped: stop the node and "
            "restore the database from a backup (`corrosion restore BACKUP`)"
        )
    what = {"disk_full": "the disk is full", "read_only": "the file is read-only"}.get(
        kind, "an I/O error"
    )
    return f"{what} at {path} ({detail}); writes resume by themselves once this is fixed"


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside ``exc``'s nested exception groups (``[exc]`` when it is not a
    group): what a start error raised inside nurseries really was."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in leaves(sub)]
    return [exc]
