"""Slack through the durable inbox (issue 14): a request is written down before it is acknowledged, a worker runs it,
and a worker that dies anywhere between the acknowledgement and the reply loses nothing and repeats nothing.

"Dies" is `WorkerDied`, a BaseException the worker does not handle: the row is left as a SIGKILL leaves it (working,
its lease running), and a second worker takes it when the lease has run out.
"""

from __future__ import annotations

import datetime as dt

import pytest
from slack_bolt import BoltRequest, BoltResponse
from sqlalchemy import text, update
from sqlmodel import Session, col, select

from bot.metrics import REGISTRY, observe_inbox
from bot.slack.inbox import SlackKinds
from bot.worker import LEASE, SORRY_PARKED
from storage import inbox
from storage import stories as store
from storage.inbox import InboxItem
from storage.models import Community
from storage.stories import Story
from tests.bot.slack.conftest import ManualSlack
from tests.bot.slack.test_slack_stories import as_dict, blocks_text, story_state
from tests.fakes import slack_signing as signing
from tests.fakes.slack_api import TEAM_ID
from tests.seen import slack_seen


class WorkerDied(BaseException):
    """Stands for SIGKILL: not an error the worker handles, it just stops mid-row."""


def die(*_: object, **__: object) -> None:
    raise WorkerDied


def send(slack: ManualSlack, request: signing.SignedRequest) -> BoltResponse:
    return slack.app.dispatch(BoltRequest(body=request.body, headers=request.headers))


def command(slack: ManualSlack, text: str, *, user: str = "U0ALICE", channel: str = "C0GENERAL") -> BoltResponse:
    url = slack.fake.response_url(f"r{len(slack.fake.calls)}")
    return send(slack, signing.signed_slash_command(text, user_id=user, channel_id=channel, response_url=url))


def rows(slack: ManualSlack) -> list[InboxItem]:
    with Session(slack.queue) as db:
        return list(db.exec(select(InboxItem).order_by(InboxItem.id)))  # type: ignore[arg-type]


def texts(slack: ManualSlack) -> list[str]:
    return [str(r["text"]) for r in slack.fake.responses]


def after_the_lease(slack: ManualSlack) -> None:
    slack.clock.advance(LEASE + dt.timedelta(seconds=1))


def test_a_command_is_written_down_before_it_is_acknowledged_and_runs_only_in_a_worker(
    manual_slack: ManualSlack,
) -> None:
    slack = manual_slack

    assert command(slack, "create Falls").status == 200

    [row] = rows(slack)
    assert (row.kind, row.status, row.order_key) == ("slack.command", "pending", f"slack:{TEAM_ID}:U0ALICE")
    assert slack.fake.responses == [] and slack.fake.calls_to("conversations.create") == []
    assert slack.worker().drain() == 1
    assert [t for t in texts(slack) if "Created *Falls*" in t] and len(texts(slack)) == 1
    [row] = rows(slack)
    assert (row.status, row.payload) == ("done", "{}")  # what was typed is not kept
    with Session(slack.engine) as db:
        assert inbox.results(db=db, inbox_id=row.id or 0) == []


def test_a_worker_killed_after_the_core_committed_delivers_the_reply_once_after_restart(
    manual_slack: ManualSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    slack = manual_slack
    command(slack, "create Falls")
    monkeypatch.setattr(SlackKinds, "deliver", die)
    with pytest.raises(WorkerDied):
        slack.worker().run_once()
    monkeypatch.undo()
    [row] = rows(slack)
    with Session(slack.engine) as db:
        [stored] = inbox.results(db=db, inbox_id=row.id or 0)
    assert row.status == "working" and "Created *Falls*" in str(stored) and slack.fake.responses == []

    after_the_lease(slack)
    assert slack.worker().drain() == 1

    assert len(texts(slack)) == 1 and "Created *Falls*" in texts(slack)[0]
    assert len(slack.fake.calls_to("conversations.create")) == 1
    with Session(slack.engine) as db:
        assert len(db.exec(select(Community)).all()) == 1


def test_a_story_card_posted_just_before_a_worker_died_is_not_posted_again(
    manual_slack: ManualSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    slack = manual_slack
    command(slack, "create Falls prevention")
    slack.worker().drain()
    channel = slack.fake.channel_named("cop-falls-prevention")
    assert channel is not None
    command(slack, "story", channel=channel.id)
    slack.worker().drain()
    [opened] = slack.fake.calls_to("views.open")
    view = as_dict(opened["view"])
    values = story_state(view, title="Safety huddles before every shift", action="Five minutes at 07:45 each day.")
    state = signing.view_state({block: {block: value} for block, value in values.items()})
    submission = signing.interactive("view_submission", view={**view, "id": "V1", "state": state})
    assert send(slack, signing.signed_interactive(submission)).status == 200
    monkeypatch.setattr(store, "set_card", die)  # the card is in the channel; the story is not yet committed
    with pytest.raises(WorkerDied):
        slack.worker().run_once()
    monkeypatch.undo()
    cards = [m for m in slack.fake.messages_in(channel.id) if "Safety huddles" in m.text]
    assert len(cards) == 1
    with Session(slack.engine) as db:
        assert db.exec(select(Story)).all() == []  # the dead worker's transaction was rolled back

    after_the_lease(slack)
    assert slack.worker().drain() == 1

    cards = [m for m in slack.fake.messages_in(channel.id) if "Safety huddles" in m.text]
    assert len(cards) == 1
    with Session(slack.engine) as db:
        [story] = db.exec(select(Story)).all()
    assert (story.status, story.card_channel_id, story.card_message_id) == ("published", channel.id, cards[0].ts)
    thanks = [c for c in slack.fake.calls_to("chat.postMessage") if c["channel"] == "U0ALICE"]
    assert sum("is shared in" in blocks_text(c) for c in thanks) == 1


def test_a_double_click_on_save_is_stored_once(manual_slack: ManualSlack) -> None:
    slack = manual_slack
    payload = signing.interactive(
        "view_submission",
        view={"id": "V9", "hash": "h1", "callback_id": "profile", "state": signing.view_state({}), "blocks": []},
    )
    assert send(slack, signing.signed_interactive(payload)).status == 200
    assert send(slack, signing.signed_interactive(payload)).status == 200
    assert [r.kind for r in rows(slack)] == ["slack.view"]


def test_a_request_that_keeps_failing_is_parked_counted_and_the_person_told_once(
    manual_slack: ManualSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    slack = manual_slack

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("the database went away")

    command(slack, "create Falls")
    monkeypatch.setattr("storage.repository.ensure_member", broken)
    worker = slack.worker()
    for _ in range(5):
        worker.run_once()
        slack.clock.advance(dt.timedelta(minutes=6))

    [row] = rows(slack)
    assert (row.status, row.attempts, row.last_error) == ("parked", 5, "runtimeerror")
    assert texts(slack) == [SORRY_PARKED]
    assert worker.run_once() == 0 and texts(slack) == [SORRY_PARKED]
    observe_inbox(engine=slack.engine, now=slack.clock.now())
    assert REGISTRY.get_sample_value("copbot_inbox_parked") == 1


def test_a_row_that_no_longer_parses_is_parked_without_stopping_the_worker(manual_slack: ManualSlack) -> None:
    slack = manual_slack
    command(slack, "create Falls")
    command(slack, "list", user="U0BOB")
    with Session(slack.queue) as db:
        db.connection().execute(
            update(InboxItem).where(col(InboxItem.order_key).endswith("U0ALICE")).values(payload="{not json")
        )
        db.commit()

    assert slack.worker().drain() == 2

    statuses = {r.order_key: (r.status, r.last_error) for r in rows(slack)}
    assert statuses == {f"slack:{TEAM_ID}:U0ALICE": ("parked", "bad_payload"), f"slack:{TEAM_ID}:U0BOB": ("done", None)}
    assert len(texts(slack)) == 1


def test_a_reply_whose_response_url_has_expired_comes_as_a_dm(manual_slack: ManualSlack) -> None:
    slack = manual_slack
    command(slack, "help")
    slack.clock.advance(dt.timedelta(minutes=31))  # Slack's response_url lasts 30 minutes

    slack.worker().drain()

    assert slack.fake.responses == []
    [dm] = [c for c in slack.fake.calls_to("chat.postMessage") if c["channel"] == "U0ALICE"]
    assert "/cop create" in slack_seen(dm)


def test_a_form_whose_trigger_expired_is_offered_as_a_button_that_opens_it(manual_slack: ManualSlack) -> None:
    slack = manual_slack
    slack.fake.fail_next("views.open", error="expired_trigger_id")
    command(slack, "profile")

    slack.worker().drain()

    [offer] = slack.fake.responses
    assert "too slow" in str(offer["text"])
    [button] = [e for b in offer["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert button["text"]["text"] == "Open the form" and button["action_id"] == "form.open"
    payload = signing.interactive(
        "block_actions",
        actions=[
            {"action_id": "form.open", "block_id": "b", "type": "button", "value": button["value"], "action_ts": "2"}
        ],
        response_url=slack.fake.response_url("open"),
    )
    send(slack, signing.signed_interactive(payload))
    slack.worker().drain()
    [_, opened] = slack.fake.calls_to("views.open")
    assert as_dict(opened["view"])["callback_id"] == "profile"


def test_a_database_that_cannot_take_the_request_answers_503_and_nothing_is_done(manual_slack: ManualSlack) -> None:
    slack = manual_slack
    with slack.queue.begin() as conn:
        conn.execute(text("DROP TABLE inbox"))

    response = command(slack, "create Falls")

    assert response.status == 503
    assert slack.fake.responses == [] and slack.fake.calls_to("conversations.create") == []


def test_an_ordinary_channel_message_is_acknowledged_and_not_stored(manual_slack: ManualSlack) -> None:
    slack = manual_slack
    event = signing.event_callback("message", user="U0BOB", channel="C0GENERAL", text="lunch at 12?")

    assert send(slack, signing.signed_event(event)).status == 200

    assert rows(slack) == []
