"""The redactor's cheap pre-check only skips texts Presidio would leave as they are: the same
output with and without it, on IPv6 forms and on texts with colons that hold no address."""

from __future__ import annotations

import pytest

from signals.redaction import Redactor

TEXTS = [
    "Question 12: what should I do with my savings?",
    "Note: call me back. Time: 10:30, room 4.",
    "Server at 2001:db8:85a3::8a2e:370:7334 is down",
    "loopback ::1 and fe80::1%eth0 and 1:2:3:4:5:6:7:8",
    "mapped ::ffff:192.168.0.1 here",
    "ratio 3:2 and a URL https://example.org/path",
    "plain answer without anything personal",
]


@pytest.mark.parametrize("text", TEXTS)
def test_the_prefilter_changes_nothing(text: str) -> None:
    checked = Redactor()
    unchecked = Redactor()
    unchecked._prefiltered = False  # every text goes to Presidio
    assert checked(text) == unchecked(text)


def test_a_lone_colon_does_not_run_presidio() -> None:
    redactor = Redactor()
    assert not redactor._may_hold_entities("Question 12: what should I do with my savings?")
    assert redactor._may_hold_entities("fe80::1")
    assert redactor._may_hold_entities("at 2001:db8:1:2:3:4:5:6")
    assert "<IP_ADDRESS>" in redactor("the host 2001:db8:85a3::8a2e:370:7334 answered")
