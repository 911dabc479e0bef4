"""`python -m workers.intake`: the alert intake process."""

from workers.intake.process import main

main()
