"""What people see on Slack: every kind of message copbot sends shows hostile text literally and pings nobody.

Community names, purposes, story titles and texts, the team a story thanks, profile fields and custom prompts hold
`<!channel>`, `<!here>`, `<!subteam^…>`, a link hidden behind a word, `&amp;` and `*`; the recorded Web API calls and
response_url bodies are read back with `tests.seen` as Slack would show them.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from slack_bolt import App
from sqlalchemy import Engine

from bot.dispatcher import Dispatcher
from bot.slack.platform import SlackPlatform, make_client
from bot.slack.render import TEXT_LIMIT, home_view, message_blocks, message_payload, mrkdwn
from handlers.ports import Button, Message, Section
from tests.bot.slack.test_slack_app import command, dispatch
from tests.bot.slack.test_slack_stories import as_dict, picked, story_state, submit
from tests.conftest import FixedClock
from tests.fakes import slack_signing as signing
from tests.fakes.slack_api import BOT_TOKEN, BOT_USER_ID, FakeSlack
from tests.reference import reference_path
from tests.seen import seen_slack, slack_pings, slack_seen

NAME = "<!channel> Falls & co <https://evil.example|click>"
PURPOSE = "<!here> sharing <!subteam^S123> what works &amp; more"
TITLE = "<!channel> huddles <!everyone>"
ACTION = "Five minutes <https://evil.example|click> &amp; 5* staff <!here>"
PROFESSION = "<!channel> Nurse"
ORGANISATION = "NUH & <https://evil.example|click>"
TEAM = "<!subteam^S0NIGHT> night team & <https://evil.example|ward 7>"
HOSTILE = [NAME, PURPOSE, TITLE, ACTION, PROFESSION, ORGANISATION, TEAM]
SLUG = "channel-falls-co-https-evil-example-click"

IN_THE_CHANNEL = {"type": "static_select", "selected_option": {"value": "community"}}
SENDS = ("chat.postMessage", "chat.postEphemeral", "chat.update", "views.publish")


def sent(fake: FakeSlack) -> list[dict[str, Any]]:
    """Everything copbot showed: Web API messages and views, and response_url bodies."""
    calls = [dict(r.params) for r in fake.records if r.method in SENDS]
    return calls + [dict(r) for r in fake.responses]


def parsed_texts(value: Any) -> list[str]:
    """The top-level `text` and every mrkdwn text object's text (plain_text is not parsed by Slack)."""
    if isinstance(value, str) and value.startswith(("[", "{")):
        value = json.loads(value)
    if isinstance(value, dict):
        own = (
            [str(value["text"])] if value.get("type") in ("mrkdwn", None) and isinstance(value.get("text"), str) else []
        )
        return own + [
            t
            for inner in value.values()
            if not isinstance(inner, str) or inner[:1] in "[{"
            for t in parsed_texts(inner)
        ]
    if isinstance(value, list):
        return [t for inner in value for t in parsed_texts(inner)]
    return []


def posts_to(fake: FakeSlack, channel: str, containing: str) -> list[str]:
    return [
        slack_seen(c)
        for c in fake.calls_to("chat.postMessage")
        if c["channel"] == channel and containing in slack_seen(c)
    ]


@pytest.fixture
def dispatcher(fake_slack: FakeSlack, engine: Engine, clock: FixedClock) -> Dispatcher:
    sender = SlackPlatform(make_client(token=BOT_TOKEN, base_url=fake_slack.url, wait_on_rate_limit=False))
    return Dispatcher(engine=engine, platform=sender, clock=clock, workspace_rate=1000, channel_rate=1000)


def test_every_message_kind_shows_hostile_text_literally_and_pings_nobody(
    slack: tuple[App, FakeSlack], dispatcher: Dispatcher
) -> None:
    app, fake = slack
    created = command(app, fake, f"create {NAME} | {PURPOSE}")
    channel = fake.channel_named(f"cop-{SLUG}")
    assert channel is not None, created
    command(app, fake, f"join {SLUG}", user="U0BOB")
    dispatch(app, signing.signed_slash_command("story", channel_id=channel.id, response_url=fake.response_url()))
    [opened] = fake.wait_for("views.open")
    view = as_dict(opened["view"])
    values = story_state(view, title=TITLE, action=ACTION, recognised_group=TEAM, consent_scope=IN_THE_CHANNEL)
    submit(app, view, values)
    fake.wait_for("chat.postMessage", count=3)
    command(app, fake, "digest", channel=channel.id)
    command(app, fake, "prompt now", channel=channel.id)
    for user in ("U0ALICE", "U0BOB"):
        command(app, fake, f'profile profession="{PROFESSION}" organisation="{ORGANISATION}"', user=user)
    command(app, fake, "intros run", channel=channel.id)
    dispatcher.run()
    command(app, fake, "list")
    command(app, fake, "help")
    command(app, fake, f"archive {SLUG} confirm", channel=channel.id)

    everything = sent(fake)
    assert len(everything) > 15
    for payload in everything:
        assert slack_pings(payload) == set(), slack_seen(payload)
        # Independent of the helper: no text Slack parses holds a special mention or a link.
        for text in parsed_texts(payload):
            assert "<!" not in text and "<http" not in text, text

    # The welcome, the story card, the digest and the prompt post, in the channel.
    [welcome] = posts_to(fake, channel.id, "Welcome to")
    assert f"Welcome to {NAME}" in welcome and PURPOSE in welcome
    [card] = posts_to(fake, channel.id, "What was done")
    assert TITLE in card and ACTION in card and NAME in card and f"Recognising\n{TEAM}" in card
    [digest] = posts_to(fake, channel.id, "What's been happening")
    assert f"New story: {TITLE}" in digest and f"Digest · {NAME}" in digest
    [prompt] = posts_to(fake, channel.id, "Reflective prompt for")
    assert f"Reflective prompt for {NAME}" in prompt
    # The introduction, in the group DM of the two and copbot: both people, their profiles, the advice, the starter.
    [group] = [c for c in fake.channels.values() if c.kind == "mpim"]
    assert set(group.members) == {BOT_USER_ID, "U0ALICE", "U0BOB"}
    [intro] = posts_to(fake, group.id, "Meet each other")
    assert any(f"Meet each other: @{a} and @{b}, from {NAME}." in intro
               for a, b in (("U0ALICE", "U0BOB"), ("U0BOB", "U0ALICE")))  # fmt: skip
    for user in ("U0ALICE", "U0BOB"):
        assert f"@{user}\nProfession\n{PROFESSION}\nOrganisation\n{ORGANISATION}" in intro
    assert "Reply here to find 20–30 minutes" in intro and "A conversation starter" in intro
    # The goodbye, then replies on the response_url: the saved profile, the listing.
    [goodbye] = posts_to(fake, channel.id, "has archived")
    assert f"@U0ALICE has archived {NAME}. Thank you all" in goodbye
    profile = next(slack_seen(r) for r in fake.responses if "Profile saved" in slack_seen(r))
    assert PROFESSION in profile and ORGANISATION in profile
    assert any(NAME in slack_seen(r) and PURPOSE in slack_seen(r) for r in fake.responses)  # the list


def test_a_story_card_and_its_thank_you_never_ping(slack: tuple[App, FakeSlack]) -> None:
    app, fake = slack
    command(app, fake, "create Falls prevention")
    command(app, fake, "join falls-prevention", user="U0BOB")
    channel = fake.channel_named("cop-falls-prevention")
    assert channel is not None
    dispatch(app, signing.signed_slash_command("story", channel_id=channel.id, response_url=fake.response_url()))
    [opened] = fake.wait_for("views.open")
    view = as_dict(opened["view"])
    title = "<!subteam^S0SAFETY|@safety> team"
    values = story_state(view, title=title, action=ACTION, recognised=picked("U0BOB"), consent_scope=IN_THE_CHANNEL)
    submit(app, view, values)
    posts = fake.wait_for("chat.postMessage", count=4)  # the welcome, the card, the thank-you, the author's note
    thanks = next(p for p in posts if p["channel"] == "U0BOB")
    assert title in slack_seen(thanks)
    assert all(slack_pings(p) == set() for p in posts)


def test_an_updated_card_is_escaped_like_a_new_one(fake_slack: FakeSlack) -> None:
    platform = SlackPlatform(make_client(token=BOT_TOKEN, base_url=fake_slack.url))
    ts = platform.post(channel_id="C0GENERAL", message=Message(text="A card"))

    platform.update_message(channel_id="C0GENERAL", message_id=ts, message=Message(text=f"_Withdrawn:_ {TITLE}"))

    [update] = fake_slack.calls_to("chat.update")
    assert (update["channel"], update["ts"]) == ("C0GENERAL", ts)
    assert slack_seen(update) == f"Withdrawn: {TITLE}" and slack_pings(update) == set()


# --- the renderer ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("hostile", HOSTILE)
@pytest.mark.parametrize(
    "shape",
    [
        lambda t: Message(text=f"Hello {t}"),
        lambda t: Message(text="fallback", title=t, sections=(Section(f"*{t}*"), Section("", fields=(("Who", t),)))),
        lambda t: Message(text=f"> {t}\n{t}", buttons=(Button(t, "x.y"),)),
    ],
    ids=["text", "sections", "quote-and-button"],
)
def test_the_renderer_shows_any_text_literally(hostile: str, shape: Any) -> None:
    message = shape(hostile)

    payload = message_payload(message)

    assert slack_pings(payload) == set()
    assert hostile in seen_slack(message)
    assert slack_pings(home_view(message)) == set()


def test_mentions_and_quotes_stay_markup_and_everything_else_is_escaped() -> None:
    text = "> <@U0BOB> in <#C0FALLS|falls> & <@U0X|A&B>\nx > y <@nobody> <#general>"

    assert mrkdwn(text) == (
        "> <@U0BOB> in <#C0FALLS|falls> &amp; <@U0X|A&amp;B>\nx &gt; y &lt;@nobody&gt; &lt;#general&gt;"
    )
    assert seen_slack(Message(text=text), names={"U0BOB": "bob"}) == (
        "> @bob in #falls & @A&B\nx > y <@nobody> <#general>"
    )


def test_with_sections_the_sections_are_the_body_and_text_only_the_notification() -> None:
    message = Message(text="Only the notification", title="Intro", sections=(Section("Meet *Sam*"),))

    assert seen_slack(message) == "Intro\nMeet Sam"
    assert message_payload(message)["text"] == "Only the notification"
    assert seen_slack(Message(text="The body", title="Intro")) == "Intro\nThe body"


def test_a_long_text_is_split_over_blocks_not_cut() -> None:
    lines = [f"• line {n} with <@U0BOB> & <b>" for n in range(400)]
    message = Message(text="\n".join(lines))

    blocks = message_blocks(message)

    assert len(blocks) > 1 and all(len(b["text"]["text"]) <= TEXT_LIMIT for b in blocks)
    assert seen_slack(message, names={"U0BOB": "bob"}).splitlines() == [
        line.replace("<@U0BOB>", "@bob") for line in lines
    ]


def test_many_fields_are_all_shown() -> None:
    fields = tuple((f"Field {n}", f"value {n}") for n in range(23))

    seen = seen_slack(Message(text="x", sections=(Section("Profile", fields=fields),)))

    assert all(f"Field {n}\nvalue {n}" in seen for n in range(23))


# --- the helpers, on Slack's own payloads --------------------------------------------------------------------------


def reference(*parts: str) -> dict[str, Any]:
    return dict(json.loads(reference_path(*parts).read_text()))


def test_seen_reads_a_real_mention_and_prefers_the_blocks_to_the_text() -> None:
    mention = reference("slack-bolt-python-payloads", "event_callback.app_mention__app__app_mention_event_body.json")
    shortcut = reference("slack-bolt-python-payloads", "message_action__shortcut__message_shortcut_body.json")

    assert slack_seen(mention["event"], names={"W111": "copbot"}) == "@copbot Hi there!"
    # Bolt's sample names W222 in `text` and U222 in its rich-text blocks: Slack shows the blocks.
    assert slack_seen(shortcut["message"]) == "@U222 test"
    assert slack_pings(mention["event"]) == set() and slack_pings(shortcut["message"]) == set()


def test_seen_and_pings_tell_a_real_ping_from_a_shown_one() -> None:
    real = {"text": "Hi <!channel> and <!subteam^S1|@nurses>, see <https://evil.example|the rota>"}
    shown = {"text": "Hi &lt;!channel&gt;, see &lt;https://evil.example|the rota&gt; &amp; *more*"}
    blocks = {"text": "x", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "<!here> now"}}]}
    typed = {"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "@channel look"}}]}
    verbatim = {"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "@channel look", "verbatim": True}}]}

    assert slack_seen(real) == "Hi @channel and @nurses, see the rota"
    assert slack_pings(real) == {"channel", "subteam^S1", "https://evil.example"}
    assert slack_seen(shown) == "Hi <!channel>, see <https://evil.example|the rota> & more"
    assert slack_pings(shown) == set()
    assert slack_pings(blocks) == {"here"}
    assert slack_pings(typed) == {"channel"}  # automatic parsing, unless the text object is verbatim
    assert slack_pings(verbatim) == set()
    broadcast = {"type": "rich_text", "elements": [{"type": "rich_text_section", "elements": [
        {"type": "broadcast", "range": "everyone"}, {"type": "text", "text": " hi"}]}]}  # fmt: skip
    assert slack_seen({"blocks": [broadcast]}) == "@everyone hi"
    assert slack_pings({"blocks": [broadcast]}) == {"everyone"}


def test_seen_reads_slack_sdk_home_views() -> None:
    plain = reference("slack-python-sdk-fixtures", "view_home_001.json")
    links = reference("slack-python-sdk-fixtures", "view_home_002.json")
    fields = reference("slack-python-sdk-fixtures", "view_home_004.json")

    assert "*this is plain_text text*" in slack_seen(plain)  # plain_text is never parsed
    assert "Last updated: Jan 1, 2019" in slack_seen(plain)
    assert "PR Strategy 2019" in slack_seen(links) and "fakelink" not in slack_seen(links)
    assert "fakelink.toUrl.com" in slack_pings(links)
    assert "Current Quarter\nBudget: $18,000 (ends in 53 days)" in slack_seen(fields)
    assert slack_seen({"view": json.dumps(links)}) == slack_seen(links)  # views.publish sends it as JSON
