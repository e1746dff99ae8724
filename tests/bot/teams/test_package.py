"""The Teams app package: manifest valid against the newest schema, icons of the right size and transparency."""

from __future__ import annotations

import copy
import json
import re
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from bot.teams.package import (
    MANIFEST_SCHEMA_URL,
    MANIFEST_VERSION,
    build_manifest,
    build_package,
)
from tests.reference import reference_path

SCHEMAS = reference_path("teams-app-manifest-schema")
APP_ID = "6f1b7a3e-2c4d-4e8f-9a0b-1c2d3e4f5a6b"


def newest_schema_version() -> str:
    versions = [p.name.removeprefix("v") for p in SCHEMAS.glob("v1.*") if (p / "MicrosoftTeams.schema.json").exists()]
    return max(versions, key=lambda v: tuple(int(n) for n in v.split(".")))


def manifest_errors(manifest: dict[str, Any], *, version: str = MANIFEST_VERSION) -> list[str]:
    """Validate offline: the schema is registered under its public URL, so `$ref`s never leave the machine."""
    schema = json.loads((SCHEMAS / f"v{version}" / "MicrosoftTeams.schema.json").read_text())
    registry: Registry[Any] = Registry().with_resource(
        MANIFEST_SCHEMA_URL, Resource.from_contents(schema, default_specification=DRAFT4)
    )
    # The schemas are draft-04 but pin manifestVersion with draft-06 `const`; teach draft-04 that one keyword.
    validator_class = jsonschema.validators.extend(
        jsonschema.Draft4Validator, {"const": jsonschema.Draft6Validator.VALIDATORS["const"]}
    )
    # The schema itself is the root (a `{"$ref": url}` wrapper would let `$schema` swap the class back to draft-04).
    validator = validator_class(registry.contents(MANIFEST_SCHEMA_URL), registry=registry)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(manifest)]


@pytest.fixture
def package(tmp_path: Path) -> Path:
    return build_package(
        app_id=APP_ID,
        bot_domain="copbot.example.nhs.uk",
        out=tmp_path / "dist" / "copbot-teams.zip",
        version="1.2.3",
        developer_url="https://example.org/copbot",
    )


def read_zip(package: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(package) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def png_header(data: bytes) -> tuple[int, int, int, int]:
    """(width, height, bit depth, colour type) from the IHDR chunk."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR")
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    return width, height, depth, colour


def png_rgba_rows(data: bytes) -> list[bytes]:
    """Decode an 8-bit RGBA PNG written with filter 0 (what the package writes) into rows of pixels."""
    width, height, depth, colour = png_header(data)
    assert (depth, colour) == (8, 6)
    offset, idat = 8, b""
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        chunk = data[offset + 8 : offset + 8 + length]
        crc = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])[0]
        assert crc == zlib.crc32(kind + chunk) & 0xFFFFFFFF
        if kind == b"IDAT":
            idat += chunk
        offset += 12 + length
    raw = zlib.decompress(idat)
    stride = 1 + width * 4
    rows = [raw[i * stride : (i + 1) * stride] for i in range(height)]
    assert all(r[0] == 0 for r in rows)
    return [r[1:] for r in rows]


def test_the_manifest_targets_the_newest_schema_in_the_reference() -> None:
    assert newest_schema_version() == MANIFEST_VERSION


def test_the_packaged_manifest_is_valid(package: Path) -> None:
    manifest = json.loads(read_zip(package)["manifest.json"])

    assert manifest_errors(manifest) == []


def test_a_broken_manifest_fails_validation() -> None:
    manifest = build_manifest(
        app_id=APP_ID, bot_domain=None, version="1.0.0", developer_url="https://example.org/copbot"
    )
    broken = copy.deepcopy(manifest)
    broken["bots"][0]["botId"] = "not-a-guid"
    broken["composeExtensions"][0]["commands"][0]["context"] = ["everywhere"]
    del broken["icons"]

    errors = manifest_errors(broken)

    assert manifest_errors(manifest) == []
    assert any(e.startswith("bots/0/botId") for e in errors)
    assert any(e.startswith("composeExtensions/0/commands/0/context/0") for e in errors)
    assert any("'icons' is a required property" in e for e in errors)


def test_a_manifest_claiming_another_version_fails_the_const() -> None:
    manifest = build_manifest(app_id=APP_ID, bot_domain=None, version="1.0.0", developer_url="https://example.org/x")

    assert any("manifestVersion" in e for e in manifest_errors({**manifest, "manifestVersion": "1.29"}))


def test_the_manifest_describes_the_bot_the_action_and_the_permissions(package: Path) -> None:
    manifest = json.loads(read_zip(package)["manifest.json"])

    [bot] = manifest["bots"]
    assert bot["botId"] == APP_ID
    assert bot["supportsFiles"] is True
    assert set(bot["scopes"]) == {"personal", "team", "groupChat"}
    titles = {c["title"] for c in bot["commandLists"][0]["commands"]}
    assert {"help", "list", "create", "join", "leave", "story", "stories", "profile"} <= titles
    [action] = manifest["composeExtensions"][0]["commands"]
    assert (action["id"], action["type"], action["title"]) == ("saveAsStory", "action", "Save as a story")
    assert (action["context"], action["fetchTask"]) == (["message"], True)
    rsc = manifest["authorization"]["permissions"]["resourceSpecific"]
    assert {"name": "Channel.Create.Group", "type": "Application"} in rsc
    assert {"name": "ChannelSettings.Read.Group", "type": "Application"} in rsc  # find_channel lists the channels
    assert {"name": "TeamMember.Read.Group", "type": "Application"} in rsc
    assert {"name": "ChannelMessage.Read.Group", "type": "Application"} in rsc  # thread replies to prompts
    assert manifest["webApplicationInfo"]["id"] == APP_ID
    assert manifest["validDomains"] == ["copbot.example.nhs.uk"]
    assert manifest["icons"] == {"color": "color.png", "outline": "outline.png"}


def test_the_icons_have_the_sizes_teams_requires(package: Path) -> None:
    files = read_zip(package)

    assert set(files) == {"manifest.json", "color.png", "outline.png"}
    assert png_header(files["color.png"])[:2] == (192, 192)
    assert png_header(files["outline.png"])[:2] == (32, 32)


def test_the_outline_icon_is_white_on_transparent(package: Path) -> None:
    rows = png_rgba_rows(read_zip(package)["outline.png"])
    pixels = [row[i : i + 4] for row in rows for i in range(0, len(row), 4)]

    assert rows[0][3] == rows[0][-1] == rows[-1][3] == rows[-1][-1] == 0  # all four corners transparent
    opaque = [p for p in pixels if p[3] == 255]
    assert opaque, "the glyph is missing"
    assert all(p[:3] == b"\xff\xff\xff" for p in pixels)  # white glyph


def test_the_package_is_reproducible(tmp_path: Path, package: Path) -> None:
    again = build_package(
        app_id=APP_ID,
        bot_domain="copbot.example.nhs.uk",
        out=tmp_path / "again.zip",
        version="1.2.3",
        developer_url="https://example.org/copbot",
    )

    assert again.read_bytes() == package.read_bytes()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"app_id": "copbot"}, "app_id must be a GUID"),
        ({"version": "v1"}, "version must be semantic"),
        ({"bot_domain": "https://copbot.example.org/api/messages"}, "bot_domain must be a bare host"),
    ],
)
def test_bad_arguments_are_refused(changes: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {
        "app_id": APP_ID,
        "bot_domain": "copbot.example.org",
        "version": "1.0.0",
        "developer_url": "https://example.org/copbot",
    }
    with pytest.raises(ValueError, match=re.escape(message)):
        build_manifest(**{**arguments, **changes})
