"""Every error an environment raises on purpose, in one public place.

Callers (``ddn train``, the experiment loop, tests) import them from here whatever
environment raised them. Which ones are also ``ValueError`` matters: ``ddn train``
reports a ``ValueError`` as one configuration line, anything else as a failure.
"""

from __future__ import annotations


class MissingExtraError(ImportError, ValueError):
    """An optional dependency of an environment (jaxmarl, smac, StarCraft II) is missing.

    Also a ``ValueError``, so ``ddn train`` reports it as a one-line configuration error
    (with the install command) rather than a traceback.
    """


class WorkerError(RuntimeError, ValueError):
    """An environment could not be built or keeps failing (the game crashes for good).

    Also a ``ValueError``, so ``ddn train`` shows the worker's own message as a one-line
    configuration error (a bad map name, a missing package) rather than a traceback.
    """


class EnvError(RuntimeError):
    """The env's own Python code raised in ``reset()`` or ``step()`` (or broke the API).

    Not a crash of a game process, which restarts the worker: a bug that a restart
    would only repeat. The message names the env and the copy and carries the env's
    own traceback; ``ddn train`` prints it and stops.
    """
