"""The ``acidic`` command: an adapter over :class:`acidic.App` and the admin queries.

Loaded only by the console script and ``python -m acidic``: ``import acidic`` never
imports click, rich or any module of this package.
"""

from ._root import main

__all__ = ["main"]
