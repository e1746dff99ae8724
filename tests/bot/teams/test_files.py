"""The file-consent pieces: the cards, reading the invoke, and the upload to a (fake) OneDrive upload session."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from bot.teams import files
from bot.teams._http import RetryPolicy
from tests.fakes.onedrive import FakeOneDrive


@pytest.fixture
def onedrive() -> Iterator[FakeOneDrive]:
    with FakeOneDrive() as fake:
        yield fake
        assert fake.all_violations == []


def test_the_consent_card_has_the_documented_shape() -> None:
    card = files.consent_attachment(filename="stories.csv", description="Stories of Falls", size=1234, key="k1")

    assert card["contentType"] == "application/vnd.microsoft.teams.card.file.consent"
    assert card["name"] == "stories.csv"
    assert card["content"] == {
        "description": "Stories of Falls",
        "sizeInBytes": 1234,
        "acceptContext": {"copbotFile": "k1"},
        "declineContext": {"copbotFile": "k1"},
    }


def test_an_accept_is_read_with_its_upload_info(onedrive: FakeOneDrive) -> None:
    info = onedrive.session("stories.csv")
    value = {"type": "fileUpload", "action": "accept", "context": {"copbotFile": "k1"}, "uploadInfo": info}

    answer = files.parse_answer(value)

    assert answer is not None and answer.accepted and answer.key == "k1"
    assert answer.upload == files.UploadInfo(
        upload_url=info["uploadUrl"],
        content_url=info["contentUrl"],
        name="stories.csv",
        unique_id=info["uniqueId"],
        file_type="csv",
    )
    card = files.file_info_attachment(answer.upload)
    assert card["contentType"] == "application/vnd.microsoft.teams.card.file.info"
    assert card["contentUrl"] == info["contentUrl"]
    assert card["content"] == {"uniqueId": info["uniqueId"], "fileType": "csv"}


@pytest.mark.parametrize(
    "value",
    [
        None,
        {"type": "fileUpload", "action": "accept", "context": {}},  # not one of copbot's cards
        {"type": "fileUpload", "action": "maybe", "context": {"copbotFile": "k1"}},
        {"type": "somethingElse", "action": "accept", "context": {"copbotFile": "k1"}},
    ],
)
def test_other_invokes_are_not_answers(value: object) -> None:
    assert files.parse_answer(value) is None


def test_a_decline_has_no_upload() -> None:
    answer = files.parse_answer({"type": "fileUpload", "action": "decline", "context": {"copbotFile": "k9"}})

    assert answer == files.ConsentAnswer(key="k9", accepted=False, upload=None)


def _info(onedrive: FakeOneDrive, name: str) -> files.UploadInfo:
    answer = files.parse_answer(
        {"type": "fileUpload", "action": "accept", "context": {"copbotFile": "k"}, "uploadInfo": onedrive.session(name)}
    )
    assert answer is not None and answer.upload is not None
    return answer.upload


def test_the_bytes_arrive_in_range_fragments(onedrive: FakeOneDrive, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files, "CHUNK", 1000)
    content = bytes(range(256)) * 10  # 2,560 bytes: three fragments
    info = _info(onedrive, "stories.csv")

    with httpx.Client() as http:
        files.upload(http, info, content)

    token = info.upload_url.rsplit("/", 1)[-1]
    assert onedrive.uploads[token].complete
    assert bytes(onedrive.uploads[token].received) == content


def test_a_throttled_fragment_is_retried_after_retry_after(onedrive: FakeOneDrive) -> None:
    onedrive.faults.fail_next(429, retry_after=2)
    slept: list[float] = []
    info = _info(onedrive, "stories.md")

    with httpx.Client() as http:
        files.upload(http, info, b"# Stories\n", sleep=slept.append)

    assert slept == [2.0]
    assert bytes(onedrive.uploads[info.upload_url.rsplit("/", 1)[-1]].received) == b"# Stories\n"


def test_a_refused_upload_raises_with_the_status(onedrive: FakeOneDrive) -> None:
    onedrive.faults.fail_next(403, code="accessDenied")
    info = _info(onedrive, "stories.html")

    with httpx.Client() as http, pytest.raises(files.UploadError) as raised:
        files.upload(http, info, b"<p>x</p>", policy=RetryPolicy(max_attempts=2), sleep=lambda _: None)

    assert (raised.value.status, raised.value.code) == (403, "accessDenied")
