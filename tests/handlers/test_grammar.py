"""The command grammar: one parser for every platform, which never raises."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.grammar import parse


def test_name_words_and_purpose_after_a_bar() -> None:
    cmd = parse("/cop create Falls prevention | Sharing what works on our wards")
    assert cmd.name == "create"
    assert cmd.args == ("Falls", "prevention")
    assert cmd.rest == "Sharing what works on our wards"


def test_quoted_names_keep_spaces_commas_and_bars() -> None:
    assert parse('create "Falls, prevention | and more"').args == ("Falls, prevention | and more",)
    assert parse("create \u201cSmart quotes\u201d").args == ("Smart quotes",)
    assert parse("create 'single quoted' | p").args == ("single quoted",)


def test_key_value_options_with_quoted_values() -> None:
    cmd = parse('profile profession="Staff nurse" Organisation=NUH tz=Europe/London')
    assert cmd.options == {"profession": "Staff nurse", "organisation": "NUH", "tz": "Europe/London"}
    assert cmd.args == ()


def test_malformed_and_repeated_options_are_problems_not_exceptions() -> None:
    assert parse("profile =nurse").problems == ("`=nurse` is not a `key=value` option.",)
    assert parse("profile a=1 a=2").problems == ("`a` is given twice.",)


def test_user_and_channel_mentions_slack_style() -> None:
    cmd = parse("facilitator add <@U123ABC|sam> <#C999|cop-falls>")
    assert cmd.args == ("add",)
    assert cmd.users == ("U123ABC",)
    assert cmd.channels == ("C999",)


def test_a_bar_inside_a_channel_mention_is_not_the_purpose() -> None:
    cmd = parse("join <#C1|cop-falls>")
    assert cmd.channels == ("C1",)
    assert cmd.rest is None


def test_in_community_option() -> None:
    assert parse("stories in:falls-prevention handover").community == "falls-prevention"
    assert parse("facilitator add <@U1> in:<#C7|x>").channels == ("C7",)
    assert parse("stories in:").problems


def test_empty_and_case() -> None:
    assert parse("").name == ""
    assert parse("   /cop   ").name == ""
    assert parse("LIST").name == "list"


def test_unclosed_quote_runs_to_the_end() -> None:
    assert parse('create "Falls prevention').args == ("Falls prevention",)


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_parse_never_raises_on_arbitrary_text(text: str) -> None:
    cmd = parse(text)
    assert isinstance(cmd.name, str)
    assert all(isinstance(a, str) for a in cmd.args)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(['"', "'", "|", "=", "<@", "<#", ">", "in:", "a", " ", "\u201c", "\u201d"]), max_size=40)
)
def test_parse_never_raises_on_grammar_punctuation_soup(parts: list[str]) -> None:
    parse("".join(parts))
