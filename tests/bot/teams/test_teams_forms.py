"""Forms on Teams that never lose a word (issue 12): a submission with a problem is answered with the same dialog,
everything typed still in it and the problem under its field; nothing is stored until it is fixed. The same from
`/cop story` (`task/submit`) and from the "Save as a story" message action (`composeExtension/submitAction`), with
payloads shaped like the recorded Teams traffic. People to recognise are chosen in Teams' people picker.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, select

from bot.teams import cards
from storage.models import Community
from storage.stories import GROUP_MAX, Story
from tests.bot.teams.conftest import (
    FETCH_TASK,
    SUBMIT_ACTION,
    TASK_FETCH,
    TASK_SUBMIT,
    Person,
    TeamsWorld,
    card_errors,
    cards_in,
    dialog_card,
    form_inputs,
    problems_shown,
    save_as_story,
    submit_data,
    text_of,
)

NHS_NUMBER = "943 476 5919"  # the NHS Data Dictionary's example: a valid check digit, never issued
SITUATION = f"Night shift, patient {NHS_NUMBER} was due insulin at 10 pm"
FIXED_SITUATION = "Night shift, a patient was due insulin at 10 pm"
PII_PROBLEM = "This looks like it contains an NHS number. Please remove patient-identifiable details."


def falls(world: TeamsWorld) -> Community:
    """Alice creates "Falls prevention" from the team's channel: the community, with its own channel."""
    world.say("create Falls prevention", channel=True)
    with Session(world.engine) as db:
        community = db.exec(select(Community).where(Community.slug == "falls-prevention")).one()
    assert community.channel_id is not None
    return community


def stories(world: TeamsWorld) -> list[Story]:
    with Session(world.engine) as db:
        return list(db.exec(select(Story)).all())


def story_dialog(world: TeamsWorld, person: Person | None = None) -> dict[str, Any]:
    """`/cop story` in the 1:1 chat, then the card's button: the story form as Teams shows it in the dialog."""
    world.say("story", person=person)
    [opener] = cards_in(world.sent()[-1])
    [button] = opener["actions"]
    fetch = {"data": button["data"], "context": {"theme": "default"}}
    return dialog_card(world.post(world.invoke(TASK_FETCH, fetch, person=person)).json())


def typed_story(community: Community, **changes: str) -> dict[str, str]:
    """What Alice types into the story form (every field), with `changes`."""
    return {
        "community": str(community.id),
        "title": "Insulin double-checks at night",
        "situation": SITUATION,
        "action": "We double-check insulin doses with pharmacy before the 10 pm round",
        "why_it_works": "Two people, one checklist, no rush",
        "impact": "No missed or doubled doses since March",
        "recognised": "",
        "recognised_group": "the night team on ward 7",
        "themes": "medicines,teamwork",
        "consent_scope": "community",
        "show_name": "true",
        **changes,
    }


def submit(world: TeamsWorld, card: dict[str, Any], typed: dict[str, str], person: Person | None = None) -> Any:
    """Press Save: Teams posts `task/submit` with the button's data and every input's value."""
    value = {"data": {**submit_data(card), **typed}, "context": {"theme": "default"}}
    response = world.post(world.invoke(TASK_SUBMIT, value, person=person))
    assert response.status_code == 200
    return response.json()


# --- /cop story ------------------------------------------------------------------------------------------------


def test_a_story_with_an_nhs_number_comes_back_with_everything_typed_and_is_saved_once_fixed(
    world: TeamsWorld,
) -> None:
    community = falls(world)
    form = story_dialog(world)
    typed = typed_story(community)
    first = len(world.cloud.connector.calls)

    again = dialog_card(submit(world, form, typed))

    shown = form_inputs(again)
    assert {name: shown[name] for name in typed} == {**typed, "recognised": ""}
    assert problems_shown(again) == {"situation": PII_PROBLEM}
    assert again["body"][0]["text"].startswith("Nothing has been saved yet.")
    assert "The situation" in again["body"][0]["text"]
    assert stories(world) == []
    assert submit_data(again) == submit_data(form)  # the same form: its id and context ride along again
    assert world.cloud.connector.calls[first:] == []  # nothing posted or sent anywhere

    before = len(world.cloud.connector.calls)
    done = submit(world, again, {**form_inputs(again), "situation": FIXED_SITUATION})

    [story] = stories(world)
    assert (story.status, story.situation, story.recognised_group) == (
        "published",
        FIXED_SITUATION,
        "the night team on ward 7",
    )
    assert "Insulin double-checks at night" in text_of(done)
    [card] = [text_of(a) for a in world.posted_in(community.channel_id or "", since=before)]
    assert FIXED_SITUATION in card
    assert "the night team on ward 7" in card


def test_every_problem_is_under_its_own_field_and_a_required_one_left_empty_too(world: TeamsWorld) -> None:
    community = falls(world)
    form = story_dialog(world)
    typed = typed_story(community, title="", recognised_group="x" * (GROUP_MAX + 1))

    again = dialog_card(submit(world, form, typed))

    problems = problems_shown(again)
    assert set(problems) == {"title", "situation", "recognised_group"}
    assert problems["title"] == "This can't be empty."
    assert form_inputs(again)["recognised_group"] == "x" * (GROUP_MAX + 1)
    assert stories(world) == []


# --- "Save as a story" -----------------------------------------------------------------------------------------


def test_save_as_a_story_with_a_problem_shows_the_dialog_again_and_once_fixed_asks_the_author(
    world: TeamsWorld,
) -> None:
    community = falls(world)
    bob = world.bob
    world.say("help", person=bob)  # Bob has a 1:1 chat with copbot
    action = save_as_story(bob, "<p>We double-check insulin doses with pharmacy at 10&nbsp;pm</p>")
    fetched = world.post(world.in_channel(world.invoke(FETCH_TASK, action), community.channel_id))
    form = dialog_card(fetched.json())
    typed = {**form_inputs(form), "situation": SITUATION, "consent_scope": "community"}

    def submit_action(card: dict[str, Any], values: dict[str, str]) -> Any:
        # As recorded: the command, its context and the message, with the card's inputs and our keys in `data`.
        value = {**action, "context": {"theme": "default"}, "data": {**submit_data(card), **values}}
        response = world.post(world.in_channel(world.invoke(SUBMIT_ACTION, value), community.channel_id))
        assert response.status_code == 200
        return response.json()

    before = len(world.cloud.connector.calls)
    again = dialog_card(submit_action(form, typed))

    assert problems_shown(again) == {"situation": PII_PROBLEM}
    assert form_inputs(again)["situation"] == SITUATION
    assert form_inputs(again)["action"] == "We double-check insulin doses with pharmacy at 10 pm"
    [draft] = stories(world)
    assert (draft.status, draft.situation, draft.action) == ("draft", "", "")  # only the message is remembered
    assert world.received(bob, since=before) == []

    done = submit_action(again, {**form_inputs(again), "situation": FIXED_SITUATION})

    [story] = stories(world)
    assert (story.status, story.source, story.situation) == ("awaiting_author", "shortcut", FIXED_SITUATION)
    assert f"asked **{bob.name}** to approve" in text_of(done)
    [asked] = world.received(bob, since=before)
    assert "May we share your story?" in text_of(asked)
    assert FIXED_SITUATION in text_of(asked)


def test_a_message_action_submit_that_is_not_copbots_is_answered_with_nothing(world: TeamsWorld) -> None:
    value = {"commandId": "createWithPreview", "commandContext": "", "data": {"Question": "", "MultiSelect": "true"}}

    response = world.post(world.invoke(SUBMIT_ACTION, value))

    assert response.status_code == 200
    assert response.json() == {}
    assert stories(world) == []


# --- the people picker -----------------------------------------------------------------------------------------


def test_people_are_chosen_in_teams_people_picker_and_each_is_thanked(world: TeamsWorld) -> None:
    community = falls(world)
    bob, carol, dan = world.people[1], world.people[2], world.people[3]
    for person in (bob, carol):
        world.say("join falls-prevention", person=person)  # members (and copbot knows them); Dan it has never met
    form = story_dialog(world)
    [empty] = [e for e in form["body"] if e.get("id") == "recognised"]
    assert empty == {
        "type": "Input.ChoiceSet",
        "id": "recognised",
        "label": "People to recognise",
        "isMultiSelect": True,
        "choices": [],
        "choices.data": {"type": "Data.Query", "dataset": "graph.microsoft.com/users"},
        "placeholder": "Colleagues to thank (each gets a private thank-you)",
    }
    assert submit_data(form)[cards.PEOPLE_KEY] == "recognised"

    # The picker submits Entra object ids, comma-separated; with a problem elsewhere the form comes back with them.
    again = dialog_card(submit(world, form, typed_story(community, recognised=f"{bob.aad},{carol.aad},{dan.aad}")))

    [picker] = [e for e in again["body"] if e.get("id") == "recognised"]
    assert picker["value"] == f"{bob.aad},{carol.aad},{dan.aad}"
    assert picker["choices"] == [{"title": bob.name, "value": bob.aad}, {"title": carol.name, "value": carol.aad}]
    assert "recognised" not in problems_shown(again)
    assert stories(world) == []

    before = len(world.cloud.connector.calls)
    fixed = {**form_inputs(again), "situation": FIXED_SITUATION, "recognised": f"{bob.aad},{carol.aad}"}
    submit(world, again, fixed)

    [story] = stories(world)
    assert story.recognised_ids == [bob.aad, carol.aad]
    for person in (bob, carol):
        [thanks] = world.received(person, since=before)
        assert "recognised you in a story shared in **Falls prevention**" in text_of(thanks)


def test_a_typed_team_name_in_the_picker_field_is_not_taken_for_people(world: TeamsWorld) -> None:
    # Only ids become people: words that reach the field some other way are refused (the core checks them), and
    # the team is thanked in its own field.
    community = falls(world)
    form = story_dialog(world)
    typed = typed_story(community, situation=FIXED_SITUATION, recognised="the night team")

    again = dialog_card(submit(world, form, typed))

    assert "isn't someone I know" in problems_shown(again)["recognised"]
    assert stories(world) == []


def test_the_schema_takes_teams_people_picker_and_nothing_looser() -> None:
    # The tests' schema is Adaptive Cards 1.5 plus the people picker's `choices.data` as 1.6 defines it.
    def picker(**extra: Any) -> dict[str, Any]:
        return cards.card([{"type": "Input.ChoiceSet", "id": "people", "choices": [], **extra}])

    assert card_errors(picker(**{"choices.data": {"type": "Data.Query", "dataset": cards.PEOPLE_DATASET}})) == []
    assert card_errors(picker(**{"choices.data": {"type": "Data.Query"}})) != []  # no dataset
    assert card_errors(picker(**{"choices.query": {"type": "Data.Query", "dataset": cards.PEOPLE_DATASET}})) != []


# --- expired or tampered forms ---------------------------------------------------------------------------------


def test_an_expired_or_someone_elses_story_context_is_answered_in_the_dialog_and_nothing_changes(
    world: TeamsWorld,
) -> None:
    community = falls(world)
    bob = world.bob
    # Bob shares a story of his own.
    bobs_form = story_dialog(world, person=bob)
    submit(world, bobs_form, typed_story(community, situation=FIXED_SITUATION), person=bob)
    [bobs] = stories(world)
    form = story_dialog(world)

    # Valid fields are refused by the submission itself; fields with a problem can't be shown again in a form that
    # is gone, so the dialog says so.
    for context in ("story:99999", f"story:{bobs.id}", "story:NaN", "reflection:99999"):
        for situation in (FIXED_SITUATION, SITUATION):
            data = {**submit_data(form), cards.CONTEXT_KEY: context}
            value = {"data": {**data, **typed_story(community, title="Mine now", situation=situation)}}
            answer = world.post(world.invoke(TASK_SUBMIT, value)).json()

            shown = dialog_card(answer)
            assert not form_inputs(shown), context  # a message, not the form
            assert "expired" in text_of(shown) or "author" in text_of(shown), text_of(shown)
            assert "Mine now" not in text_of(shown)
    [unchanged] = stories(world)
    assert (unchanged.title, unchanged.status) == ("Insulin double-checks at night", "published")


def test_a_double_click_on_save_saves_the_story_once(world: TeamsWorld) -> None:
    community = falls(world)
    form = story_dialog(world)
    fixed = {**typed_story(community), "situation": FIXED_SITUATION}

    submit(world, form, fixed)
    twice = submit(world, form, fixed)  # Teams sends the second click as its own invoke

    assert len(stories(world)) == 1
    assert "already saved" in text_of(twice)
