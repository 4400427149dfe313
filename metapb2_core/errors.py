"""User-facing errors: the CLI prints their message on one line, without a traceback."""


class MetaPB2Error(ValueError):
    """Invalid input or configuration; the message says what and where."""


class FailedChecksError(MetaPB2Error):
    """A run finished but failed its checks; its record is kept, marked failed."""


class UnknownNameError(MetaPB2Error, KeyError):
    """A name that is not in a registry (task, method, budget preset)."""

    def __init__(self, kind: str, name: str, known: list[str]):
        self.kind, self.name, self.known = kind, name, known
        super().__init__(f"unknown {kind} {name!r}; known {kind}s: {', '.join(known)}")

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.args[0]
