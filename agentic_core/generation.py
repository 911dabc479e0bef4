"""What a model's free text is judged by while it is written: a runaway repetition. No I/O here.

A small model (the embedded SmolLM2-135M) often falls into a loop: the same sentence again and
again, or a few characters (`_OOM_OOM_OOM…`) until `max_tokens`. Measured on the agents' prompts
with llama.cpp's default sampling, 6 of 8 answers ran to 512 tokens repeating one sentence, up
to 15 times. `runaway_cut` finds such a loop at the end of the text as it grows, so the reader can
stop the stream (the server stops generating and the model's slot is free) and keep the text up
to the end of the loop's first copy.
"""

from __future__ import annotations

# llama.cpp's repeat penalty for the embedded model's free text (its server's default is 1.0, off).
# Measured with SmolLM2-135M on 8 agent requests (the observability agent's prompt, max_tokens 512):
# at 1.0, 7 of 8 answers ran to 512 tokens, 6 of them repeating one sentence (up to 15 times; 57 s
# of the model's one thread); at 1.15, 2 ran to the limit and no sentence came more than twice
# (31 s). OpenAI's `frequency_penalty` at 0.5 left loops of 13 copies; llama.cpp's DRY sampler
# alone (`dry_multiplier` 0.8), of 8. Sent with free text only, never with structured output.
EMBEDDED_REPEAT_PENALTY = 1.15
# The finish reason of a reply cut by `runaway_cut` (beside OpenAI's `stop`, `length`, ...).
FINISH_REPETITION = "repetition"
# Put after a reply cut at a loop (the agents' answers; a stream gets it as its next piece).
REPETITION_NOTE = "[The model began to repeat itself: its answer was cut there.]"
# A loop is a unit of at most MAX_UNIT characters written at least MIN_COPIES times in a row,
# at least MIN_SPAN characters in all, with at least two letters or digits in the unit (so a
# Markdown rule `-----` or a table's `|---|---|` is not one).
MAX_UNIT = 240
MIN_COPIES = 3
MIN_SPAN = 64
_CLOSING = ".,;:!?)]}\"'`"
_TAIL = MAX_UNIT * (MIN_COPIES + 1)  # characters of the end of the text that are looked at


def runaway_cut(text: str) -> int | None:
    """Where to cut `text` if it ends in a runaway repetition: the end of the loop's first copy
    (trailing whitespace left out); None when it does not.

    The loop is a run of whole copies of a unit that ends where the text ends; any end works, as
    the copies of a rotated unit end there too (`…pod.\\n\\nThe platform…pod.\\n\\nThe pla` repeats
    `…\\n\\nThe pla`). The run is followed back as far as the text keeps the unit's period, so the
    first copy kept starts where the loop did (its closing punctuation kept)."""
    offset = max(len(text) - _TAIL, 0)
    tail = text[offset:]
    n = len(tail)
    best: int | None = None
    for size in range(1, min(MAX_UNIT, n // MIN_COPIES) + 1):
        unit = tail[n - size :]
        copies = 1
        while copies * size + size <= n and tail[n - (copies + 1) * size : n - copies * size] == unit:
            copies += 1
        if copies < MIN_COPIES or copies * size < MIN_SPAN or sum(c.isalnum() for c in unit) < 2:
            continue
        start = offset + n - copies * size  # followed back in the whole text, past the tail
        while start > 0 and text[start - 1] == text[start - 1 + size]:
            start -= 1
        end = start + size
        while end < len(text) and text[end] in _CLOSING:  # the period a shifted copy leaves out
            end += 1
        cut = len(text[:end].rstrip())
        if best is None or cut < best:
            best = cut
    return best
