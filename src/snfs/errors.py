"""Errors that reach the user as one clear line instead of a traceback."""


class SnfsError(Exception):
    """Base class: ``python -m snfs.train`` prints the message and exits with status 2."""


class ConfigError(SnfsError, ValueError):
    """A config value is invalid; the message names the key and the valid choices."""


class UnknownChoiceError(ConfigError, KeyError):
    """A config key names something that is not registered."""

    def __init__(self, key: str, value: str, choices: list[str]):
        self.key, self.value, self.choices = key, value, choices
        super().__init__(f"{key}={value!r} is not a valid choice; valid choices: {', '.join(choices)}")

    def __str__(self) -> str:  # KeyError would quote the message otherwise
        return self.args[0]


class DatasetError(SnfsError, RuntimeError):
    """Dataset files are missing, incomplete or corrupt; the message says where they must be."""


class CheckpointError(SnfsError, RuntimeError):
    """A checkpoint cannot be used for this run (other model or config, or unreadable)."""


class DivergenceError(SnfsError, RuntimeError):
    """Training produced a non-finite loss."""


class RankMismatchError(SnfsError, RuntimeError):
    """Under DDP, ranks disagree on something that must be identical (e.g. the masks)."""
