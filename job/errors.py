"""One error tree for the whole tool, and the exit code each kind of failure maps to.

Every error carries a one-line message that names what went wrong and where (file and
line, host and port, or message-id). The CLI prints that line and exits with the code;
users never see a traceback.
"""

from __future__ import annotations

__all__ = [
    "EXIT_OK",
    "EXIT_INTERNAL",
    "EXIT_USAGE",
    "EXIT_CONFIG",
    "EXIT_INPUT",
    "EXIT_MAIL",
    "EXIT_MODEL",
    "EXIT_DATABASE",
    "EXIT_BUSY",
    "EXIT_UNSENT",
    "EXIT_TAMPERED",
    "EXIT_EMPTY",
    "AuditError",
    "ConfigError",
    "InputError",
    "LedgerError",
    "EmptyLedgerError",
    "MailError",
    "ModelError",
    "DatabaseError",
    "BusyError",
]

EXIT_OK = 0
EXIT_INTERNAL = 1  # a bug (an exception we did not expect), or the system's error (e.g. no space left)
EXIT_USAGE = 2  # bad command-line options (typer/click's own code)
EXIT_CONFIG = 3
EXIT_INPUT = 4  # a ledger or other input file that cannot be read
EXIT_MAIL = 5  # SMTP/IMAP/maildir failure
EXIT_MODEL = 6  # the model endpoint failed or answered nonsense
EXIT_DATABASE = 7  # the audit database is unreadable, from a newer version, or failed a write (rolled back)
EXIT_BUSY = 8  # another run or poll holds the lock
EXIT_UNSENT = 9  # the work was recorded but some mail is still unsent
EXIT_TAMPERED = 10  # audit verify found a row that does not match the hash chain
EXIT_EMPTY = 11  # a ledger has no transactions (a failed export?); --allow-empty accepts it

EXIT_CODES_HELP = (
    "Exit codes: 0 ok; 1 internal error (or the system's, e.g. a full disk); 2 usage; 3 config; 4 bad input file; "
    "5 mail transport; 6 model endpoint; 7 database; 8 another run is busy; "
    "9 recorded, but mail left unsent (retried next run); 10 audit log does not verify; "
    "11 a ledger has no transactions (--allow-empty accepts it)."
)


class AuditError(Exception):
    """Base of every error the tool reports to a user as one line."""

    exit_code = EXIT_INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(AuditError):
    exit_code = EXIT_CONFIG


class InputError(AuditError):
    exit_code = EXIT_INPUT


class LedgerError(InputError):
    """A ledger row cannot be read: ``file:line: column: what is wrong``."""

    def __init__(self, path: str, line: int | None, column: str | None, problem: str) -> None:
        where = f"{path}:{line}" if line is not None else path
        text = f"{where}: {column}: {problem}" if column else f"{where}: {problem}"
        super().__init__(text)
        self.path = path
        self.line = line
        self.column = column
        self.problem = problem


class EmptyLedgerError(InputError):
    """A ledger that holds no transactions: most often an export that failed upstream."""

    exit_code = EXIT_EMPTY


class MailError(AuditError):
    exit_code = EXIT_MAIL


class ModelError(AuditError):
    exit_code = EXIT_MODEL


class DatabaseError(AuditError):
    exit_code = EXIT_DATABASE


class BusyError(AuditError):
    exit_code = EXIT_BUSY
