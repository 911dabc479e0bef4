"""Telegram as the operator's console: forum topics, inline buttons, signed callbacks.

- `signing`: HMAC-signed callback data that fits Telegram's 64 bytes;
- `routing`: the standing forum topics and the route → topic map;
- `render`: HTML rendering, escaping and truncation of messages;
- `notifier`: `TelegramNotifier`, the `Notifier` the worker uses when a token is set;
- `bot`: the python-telegram-bot `Application` (callbacks → the `decide` update, commands);
- `cli`: `agentic telegram setup`.
"""
