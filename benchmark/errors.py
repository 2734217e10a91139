"""Exceptions the command line turns into one clear message and a non-zero exit.

Every error raised for bad input or an unreachable resource is a `CdbenchError`; its message
names the file or value concerned, what was expected, and what to do about it.
"""


class CdbenchError(Exception):
    """An expected failure with a message meant for the user (no traceback is shown)."""


class ConfigError(CdbenchError):
    """`params.yaml` (or another config) has an unknown key, a wrong type or a bad value."""


class DownloadError(CdbenchError):
    """Every source of an archive failed, or a downloaded archive did not verify."""


class DataError(CdbenchError):
    """An archive, image or layout is not what the dataset should contain."""
