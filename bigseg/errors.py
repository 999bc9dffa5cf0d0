"""Exception hierarchy. Every bigseg error also subclasses the matching builtin,
so callers can catch either ``BigsegError`` or e.g. ``ValueError``."""

from __future__ import annotations


class BigsegError(Exception):
    """Base class of every error bigseg raises on purpose."""

    exit_code = 1


class ConfigError(BigsegError, ValueError):
    """A run or cluster config is missing, unparsable, or has a bad key/value.

    The message names the file and the key path (``segmentation.k``)."""

    exit_code = 2


class DataError(BigsegError, ValueError):
    """Input data break a rule. The message names the file, the column and the rule."""

    exit_code = 3


class DeviceError(BigsegError, RuntimeError):
    """``--device gpu`` was asked for and no usable GPU is present."""

    exit_code = 4


class ClusterError(BigsegError, RuntimeError):
    """The cluster could not be created or reached, or a backend package is missing."""

    exit_code = 5


class PublishError(BigsegError, RuntimeError):
    """An output could not be published atomically (lock held, unsafe path, ...)."""

    exit_code = 6


class ModelError(BigsegError, ValueError):
    """A stored model is missing, tampered with, or does not match the input schema."""

    exit_code = 7


class StorageError(BigsegError, OSError):
    """Storage is unavailable: out of space, an object store that cannot be reached, or
    access refused (credentials missing or not allowed)."""

    exit_code = 8
