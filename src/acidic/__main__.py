"""``python -m acidic``: the ``acidic`` command."""

from ._cli._root import main

main()
