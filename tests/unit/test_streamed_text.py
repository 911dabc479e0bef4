"""The gateway's account of the model's text it streamed (`workers.gateway.chat.StreamedText`):
whatever deltas are heard, missed, repeated or retried, what the client ends up with is the run's
answer, never silently different text. And the deltas' wire format (`activities.agents.stream`)."""

from __future__ import annotations

from activities.agents.stream import MAX_PIECE_CHARS, TextDelta
from workers.gateway.deltas import NOT_THE_ANSWER, RETRIED, StreamedText

RUN = "agent-gw-1"


def d(seq: int, text: str, *, step: int = 1, attempt: int = 1) -> TextDelta:
    return TextDelta(RUN, step, attempt, seq, text)


def seen(st: StreamedText, deltas: list[TextDelta], step: int, answer: str) -> str:
    """What the client ends up with: the text shown for the deltas, then the rest at the end."""
    shown = "".join(t for t, _first in filter(None, map(st.take, deltas)))
    rest = st.rest(step, answer)
    return shown + (answer if rest is None else rest)


def test_in_order_the_rest_of_the_answer_follows() -> None:
    st = StreamedText()
    assert st.take(d(0, "All ")) == ("All ", True) and st.take(d(1, "is ")) == ("is ", False)
    assert st.rest(1, "All is well.\n\n(a note the run added)") == "well.\n\n(a note the run added)"


def test_a_missed_delta_stops_that_turn_and_the_answer_completes_it() -> None:
    st = StreamedText()
    out = seen(st, [d(0, "All "), d(2, "well"), d(3, ".")], 1, "All is well.")
    assert out == "All is well."  # the gap: nothing after it was shown; the rest came with the answer


def test_a_stream_joined_midway_shows_nothing_and_gets_the_whole_answer() -> None:
    st = StreamedText()
    assert st.take(d(4, "well.")) is None and st.rest(1, "All is well.") is None


def test_a_retried_turn_starts_again_after_a_notice_and_old_attempts_are_dropped() -> None:
    st = StreamedText()
    deltas = [d(0, "Sonarr is "), d(0, "Sonarr ", attempt=2), d(2, "down", attempt=1), d(1, "is fine.", attempt=2)]
    assert seen(st, deltas, 1, "Sonarr is fine.") == "Sonarr is " + RETRIED + "Sonarr is fine."


def test_a_retry_heard_midway_keeps_what_was_shown_and_says_so_when_it_is_not_the_answer() -> None:
    st = StreamedText()
    out = seen(st, [d(0, "Sonarr is down"), d(3, " fine.", attempt=2)], 1, "Sonarr is fine.")
    assert out == "Sonarr is down" + NOT_THE_ANSWER + "Sonarr is fine."


def test_text_of_an_earlier_turn_stays_and_the_answers_turn_is_its_own() -> None:
    st = StreamedText()
    assert seen(st, [d(0, "Let me look. "), d(0, "It is fine.", step=2)], 2, "It is fine.") == (
        "Let me look. It is fine."
    )


def test_the_wire_format_round_trips_and_stays_under_postgres_limit() -> None:
    worst = TextDelta("agent-gw-" + "f" * 32, 12, 3, 4567, "\x01" * MAX_PIECE_CHARS)
    assert TextDelta.decode(worst.encode()) == worst and len(worst.encode().encode()) < 8000
    wide = TextDelta(RUN, 1, 1, 0, "é€😀" * (MAX_PIECE_CHARS // 3))
    assert TextDelta.decode(wide.encode()) == wide and len(wide.encode().encode()) < 8000
    for bad in (
        "",
        "{}",
        "[1]",
        '{"r": 1, "s": 1, "a": 1, "q": 0, "t": "x"}',
        '{"r": "x", "s": true, "a": 1, "q": 0, "t": ""}',
    ):
        assert TextDelta.decode(bad) is None
