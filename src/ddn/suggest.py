"""The "Did you mean ...?" hint that every one-line error about a bad name carries."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def suggest(word: str, options: Iterable[str]) -> str:
    """`` Did you mean 'x'?`` for the closest of ``options`` to ``word``, or ``""``.

    Shared by the config checks and the environment registry so that a typo in a key,
    an algorithm, an environment, a parameter or a map name is answered the same way.
    """
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""
