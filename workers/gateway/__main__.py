"""`python -m workers.gateway`: the gateway process."""

from workers.gateway.process import main

main()
