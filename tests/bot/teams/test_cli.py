"""`copbot teams-package` builds the app zip from the settings, and says clearly what is missing."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from bot.cli import EXIT_CONFIG, main

APP_ID = "6f1b7a3e-2c4d-4e8f-9a0b-1c2d3e4f5a6b"


@pytest.fixture
def env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("TEAMS_APP_ID", "TEAMS_APP_PASSWORD", "TEAMS_TENANT_ID", "SLACK_BOT_TOKEN", "COPBOT_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / ".env"
    path.write_text(f"TEAMS_APP_ID={APP_ID}\nTEAMS_APP_PASSWORD=secret\nTEAMS_TENANT_ID=tenant\n")
    return path


def test_teams_package_writes_the_zip(env_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "dist" / "copbot-teams.zip"

    code = main(["--env-file", str(env_file), "teams-package", "--out", str(out), "--domain", "copbot.example.nhs.uk"])

    assert code == 0
    with zipfile.ZipFile(out) as archive:
        assert sorted(archive.namelist()) == ["color.png", "manifest.json", "outline.png"]
        manifest = json.loads(archive.read("manifest.json"))
    assert manifest["bots"][0]["botId"] == APP_ID
    assert manifest["validDomains"] == ["copbot.example.nhs.uk"]
    assert manifest["developer"]["websiteUrl"] == "https://copbot.example.nhs.uk/"
    assert "wrote" in capsys.readouterr().out


def test_teams_package_needs_the_app_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("TEAMS_APP_ID", "SLACK_BOT_TOKEN", "COPBOT_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path / ".env"
    empty.write_text("")

    code = main(["--env-file", str(empty), "teams-package", "--domain", "copbot.example.nhs.uk"])

    assert code == EXIT_CONFIG
    assert "needs TEAMS_APP_ID" in capsys.readouterr().err
    assert not (tmp_path / "copbot-teams.zip").exists()


def test_teams_package_needs_a_domain_or_developer_url(env_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--env-file", str(env_file), "teams-package"])

    assert code == EXIT_CONFIG
    assert "--domain" in capsys.readouterr().err
