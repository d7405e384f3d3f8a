"""The errors musictl reports to a user as one line (the CLI turns them into exit codes)."""

from __future__ import annotations


class MusictlError(Exception):
    """A failure the user can act on; ``str(err)`` is the whole message, ``exit_code`` the status."""

    exit_code = 1


class UsageError(MusictlError):
    """A wrong argument or option value (exit status 2, like a command-line parse error)."""

    exit_code = 2


class ArtifactError(MusictlError):
    """A missing or mismatched artifact; the message names the command that makes it."""


class TokenizeError(MusictlError):
    """One file could not be tokenized; batch commands record it and go on."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class Interrupted(MusictlError):
    """Ctrl-C or SIGTERM during a run; ``str(err)`` says exactly what was kept or removed."""

    exit_code = 130
