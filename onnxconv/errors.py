"""Errors that the CLI turns into one line and an exit code.

Library code raises these; only ``cli.py`` catches them and chooses the exit code
(see shared design: 0 pass, 1 a check failed, 2 usage or input error).
"""

from __future__ import annotations


class OnnxconvError(Exception):
    """Base class: a problem a user can act on, printed as one line."""

    exit_code = 2


class UserInputError(OnnxconvError, ValueError):
    """Bad input: missing/corrupt file, wrong shape or dtype, impossible config, unknown name."""

    exit_code = 2


class CheckFailed(OnnxconvError):
    """A check ran and failed (parity, graph structure, EP not active)."""

    exit_code = 1
