"""A runaway repetition in a model's free text is found at the end of the text as it grows, and
cut after the loop's first copy; text that repeats for a reason is left alone."""

from __future__ import annotations

import pytest

from agentic_core.generation import MAX_UNIT, runaway_cut

LOOP = "The platform is a self-hosted operations platform, and the platform is not a pod.\n\n"


def cut(text: str) -> str | None:
    at = runaway_cut(text)
    return None if at is None else text[:at]


def test_a_sentence_written_again_and_again_keeps_its_first_copy() -> None:
    text = "[Nothing was looked at.]\n\n" + LOOP * 15
    assert cut(text) == "[Nothing was looked at.]\n\n" + LOOP.strip()


def test_the_loop_is_found_wherever_the_text_ends_mid_copy() -> None:
    """A stream is checked after each piece: the text may end in the middle of a copy."""
    for extra in range(len(LOOP)):
        text = "Note.\n\n" + LOOP * 3 + LOOP[:extra]
        assert cut(text) == "Note.\n\n" + LOOP.strip(), extra


def test_a_few_characters_written_until_the_limit() -> None:
    text = "To check why, run:\n\n```\ndocker ps -h -t pod" + "_OOM" * 40
    assert cut(text) == "To check why, run:\n\n```\ndocker ps -h -t pod_OOM"


def test_a_list_item_repeated() -> None:
    text = "The default namespace has:\n- Kubernetes" + "\n- Deployment" * 6
    assert cut(text) == "The default namespace has:\n- Kubernetes\n- Deployment"


@pytest.mark.parametrize(
    "text",
    [
        "A short answer that ends. It says one thing, then another, and stops.",
        LOOP * 2,  # twice is not yet a loop
        "| a | b | c |\n|---|---|---|\n" + "|---" * 30 + "|",  # a rule has no words
        "=" * 200,
        "ha ha ha",  # under the span
        "kubectl get pods -n media\nkubectl get pods -n media\n",  # a command shown twice
        "",
    ],
)
def test_text_that_repeats_for_a_reason_is_left_alone(text: str) -> None:
    assert runaway_cut(text) is None


def test_a_unit_longer_than_the_bound_is_not_a_loop_and_a_long_text_is_looked_at_by_its_end() -> None:
    long_unit = " ".join(f"w{i}" for i in range(MAX_UNIT)) + ". "
    assert runaway_cut(long_unit * 3) is None
    text = "x " * 5000 + "An answer. " + LOOP * 4
    at = runaway_cut(text)
    assert at is not None and text[:at].endswith("An answer. " + LOOP.strip())
