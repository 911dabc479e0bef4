"""Telegram as the operator's console: forum topics, inline buttons, signed callbacks.

- `signing`: HMAC-signed callback data that fits Telegram's 64 bytes;
- `client`: the Bot API client from the settings;
- `routing`: the standing forum topics (and creating them) and the route → topic map;
- `render`: HTML rendering, escaping and truncation of messages;
- `notifier`: `TelegramNotifier`, the `Notifier` the worker uses when a token is set;
- `bot`: the python-telegram-bot `Application` (callbacks → the `decide` update, commands);
- `process` (`python -m workers.telegram`): the bot process that runs it;
- the commands, `agentic telegram setup|log`, are workers/cli/telegram.py.
"""
