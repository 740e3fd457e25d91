"""User-facing errors: the CLI prints them as one line and exits with code 2 (no traceback)."""


class UserError(Exception):
    """Bad input or an unmet precondition the user can fix. The message names the problem and the fix."""

    exit_code = 2


class RemoteError(UserError):
    """A failure on the board / SSH side that the user can act on (host key, auth, timeout, ...)."""
