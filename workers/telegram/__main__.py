"""`python -m workers.telegram`: the Telegram bot process (workers/telegram/process.py)."""

from workers.telegram.process import main

main()
