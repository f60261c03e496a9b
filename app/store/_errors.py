"""Store errors, and the one place driver errors become them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import exc as sa_exc

from treadle.domain.errors import TreadleError


class StoreError(TreadleError):
    """The database refused or failed an operation."""

    def __init__(self, operation: str, reason: str) -> None:
        self.operation = operation
        self.reason = reason
        super().__init__(f"store {operation} failed: {reason}")


class StoreUnavailable(StoreError):
    """The database could not be reached or was busy; retrying later may succeed."""


# Connection loss, timeouts, "database is locked", deadlocks and serialisation failures
# are all worth a retry; integrity and programming errors are not.
_TRANSIENT = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError, OSError)


@contextmanager
def mapped_errors(operation: str) -> Iterator[None]:
    """Re-raise SQLAlchemy and driver errors as `StoreError`/`StoreUnavailable`."""
    try:
        yield
    except TreadleError:
        raise
    except _TRANSIENT as exc:
        raise StoreUnavailable(operation, _reason(exc)) from exc
    except sa_exc.DBAPIError as exc:
        if exc.connection_invalidated:
            raise StoreUnavailable(operation, _reason(exc)) from exc
        raise StoreError(operation, _reason(exc)) from exc
    except sa_exc.SQLAlchemyError as exc:
        raise StoreError(operation, _reason(exc)) from exc


def _reason(exc: BaseException) -> str:
    original = getattr(exc, "orig", None)
    return str(original if original is not None else exc).strip() or type(exc).__name__
