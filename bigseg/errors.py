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


# -- commits and leases (bigseg.io.commits, bigseg.io.lease; DESIGN.md section 7) ---------------
class CommitConflict(PublishError):
    """Another run committed the number this run was committing (a lost race): exit 6.

    The message names the commit number and the winning run."""


class StoreUnsafe(PublishError):
    """The store ignores create-only writes (a second create of one key succeeded): commits
    and leases are not safe there, so bigseg refuses it (exit 6)."""


class LeaseHeld(PublishError):
    """Another run holds this output's lease (or won the race to take it): exit 6, naming the
    holder and when its lease expires."""


class LeaseLost(PublishError):
    """This run's lease expired or was taken over while it ran: it must not commit (exit 6)."""


class DatasetMissing(DataError):
    """The latest commit has no such logical dataset (or there is no commit yet): exit 3."""


class StorageError(BigsegError, OSError):
    """Storage is unavailable: out of space, an object store that cannot be reached, or
    access refused (credentials missing or not allowed)."""

    exit_code = 8
