"""``python -m jet_sqla.cli``: the same as the ``jet-sqla`` command."""

from .commands import main

main()
