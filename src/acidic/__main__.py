"""``python -m acidic``: the ``acidic`` command."""

from ._cli import main

main()
