"""``python -m v2vsim ...`` behaves like the ``v2vsim`` command."""

from v2vsim.cli import main

main()
