"""``python -m gateway.cli``: the same as the ``edxml-gateway`` console script."""

from gateway.cli import main

main(prog_name="edxml-gateway")
