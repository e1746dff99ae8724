"""Builds the Microsoft Teams app package: a zip of `manifest.json`, `color.png` (192²) and `outline.png` (32²).

The manifest targets schema v1.30, the newest in `reference/teams-app-manifest-schema/`: one bot (personal, team
and group chat, with the `/cop` command list for @mention and the slash menu), a message action "Save as a story",
and resource-specific consent so a team owner can let the bot create channels, read members and receive channel
messages (replies to prompts) in that team only.
The icons are drawn here (a speech bubble) and written by a tiny PNG encoder, so no imaging library is needed.
The zip is byte-for-byte reproducible for the same arguments.
"""

from __future__ import annotations

import json
import re
import struct
import zipfile
import zlib
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

MANIFEST_VERSION = "1.30"
MANIFEST_SCHEMA_URL = (
    f"https://developer.microsoft.com/json-schemas/teams/v{MANIFEST_VERSION}/MicrosoftTeams.schema.json"
)
ACCENT_COLOR = "#005EB8"  # NHS Blue
SAVE_AS_STORY_COMMAND_ID = "saveAsStory"
# Granted by a team owner for that team only: make channels and list them (a create that stopped after making its
# channel finds it again), read team and channel members, and receive channel messages without an @mention (so
# replies in a prompt's thread can be kept as reflections, as on Slack).
RESOURCE_SPECIFIC_PERMISSIONS = (
    "Channel.Create.Group",
    "ChannelSettings.Read.Group",
    "TeamMember.Read.Group",
    "ChannelMember.Read.Group",
    "ChannelMessage.Read.Group",
)
BOT_SCOPES = ("personal", "team", "groupChat")

COMMANDS: tuple[tuple[str, str], ...] = (
    ("help", "Short help, or help on one command: help stories"),
    ("list", "The communities of practice, their purpose and members"),
    ("create", "Start a community: create Falls prevention | Sharing what works on wards"),
    ("join", "Join a community: join falls-prevention"),
    ("leave", "Leave a community: leave falls-prevention"),
    ("story", "Share a 'what's working' story"),
    ("stories", "Search the stories: stories handover"),
    ("profile", "Your profession, organisation and time zone"),
    ("prompts", "Reflective prompts on or off: prompts off"),
    ("intros", "Introductions on, off or snoozed: intros snooze 4"),
    ("me", "Your data: me export, or me forget"),
    ("prompt", "Facilitators: prompt now, pause, resume or schedule"),
)

_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_SEMVER = re.compile(r"^\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$")
_DOMAIN = re.compile(r"^(\*\.)?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*(:\d+)?$")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def build_manifest(
    *,
    app_id: str,
    bot_domain: str | None,
    version: str,
    name: str = "copbot",
    developer_name: str = "copbot contributors",
    developer_url: str,
    privacy_url: str | None = None,
    terms_url: str | None = None,
    package_id: str | None = None,
) -> dict[str, Any]:
    """The manifest as a dict. `app_id` is the bot's Microsoft App ID (a GUID); `package_id` the Teams app id
    (defaults to `app_id`); `bot_domain` the host serving `/api/messages`, listed in `validDomains`."""
    package_id = package_id or app_id
    for label, value in (("app_id", app_id), ("package_id", package_id)):
        if not _GUID.match(value):
            raise ValueError(f"{label} must be a GUID")
    if not _SEMVER.match(version):
        raise ValueError(f"version must be semantic (1.2.3): {version!r}")
    if bot_domain is not None and not _DOMAIN.match(bot_domain):
        raise ValueError(f"bot_domain must be a bare host name such as bot.example.org: {bot_domain!r}")
    if not 0 < len(name) <= 30:
        raise ValueError("name must be 1-30 characters")

    commands = [{"title": title, "description": description} for title, description in COMMANDS]
    return {
        "$schema": MANIFEST_SCHEMA_URL,
        "manifestVersion": MANIFEST_VERSION,
        "version": version,
        "id": package_id,
        "developer": {
            "name": developer_name[:32],
            "websiteUrl": developer_url,
            "privacyUrl": privacy_url or developer_url,
            "termsOfUseUrl": terms_url or developer_url,
        },
        "name": {"short": name, "full": f"{name}: Patient Safety Communities of Practice"[:100]},
        "description": {
            "short": "Communities of practice for patient safety: stories, prompts, intros",
            "full": (
                "Run NHS Patient Safety Communities of Practice in Teams: create and join communities, share "
                "'what's working' stories (Learning from Excellence), get reflective prompts, and meet colleagues "
                "through regular introductions. Type /cop help or @mention the bot with help to start."
            ),
        },
        "icons": {"outline": "outline.png", "color": "color.png"},
        "accentColor": ACCENT_COLOR,
        "bots": [
            {
                "botId": app_id,
                "scopes": list(BOT_SCOPES),
                "supportsFiles": True,  # exports reach facilitators through the file-consent flow
                "isNotificationOnly": False,
                # Lists the commands under the "/" menu as well as on @mention (the design's `/cop` trigger).
                "supportsTargetedMessages": True,
                "commandLists": [
                    {"scopes": list(BOT_SCOPES), "triggers": ["mention", "slash"], "commands": commands},
                ],
            }
        ],
        "composeExtensions": [
            {
                "botId": app_id,
                "commands": [
                    {
                        "id": SAVE_AS_STORY_COMMAND_ID,
                        "type": "action",
                        "title": "Save as a story",
                        "description": "Save this message as a 'what's working' story (its author is asked first)",
                        "context": ["message"],
                        "fetchTask": True,
                    }
                ],
            }
        ],
        "permissions": ["identity", "messageTeamMembers"],
        "validDomains": [bot_domain] if bot_domain else [],
        "webApplicationInfo": {"id": app_id},
        "authorization": {
            "permissions": {
                "resourceSpecific": [{"name": n, "type": "Application"} for n in RESOURCE_SPECIFIC_PERMISSIONS],
            }
        },
    }


def build_package(
    *,
    app_id: str,
    bot_domain: str | None,
    out: Path,
    version: str,
    name: str = "copbot",
    developer_name: str = "copbot contributors",
    developer_url: str,
    privacy_url: str | None = None,
    terms_url: str | None = None,
    package_id: str | None = None,
) -> Path:
    """Write the app package zip to `out` (parents created) and return `out`."""
    manifest = build_manifest(
        app_id=app_id,
        bot_domain=bot_domain,
        version=version,
        name=name,
        developer_name=developer_name,
        developer_url=developer_url,
        privacy_url=privacy_url,
        terms_url=terms_url,
        package_id=package_id,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    files = {
        "manifest.json": json.dumps(manifest, indent=2, ensure_ascii=False).encode() + b"\n",
        "color.png": color_icon(),
        "outline.png": outline_icon(),
    }
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for filename, data in files.items():
            info = zipfile.ZipInfo(filename, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return out


# -- icons ---------------------------------------------------------------------------------------------------------


@cache
def color_icon(size: int = 192) -> bytes:
    """The full-colour icon: a white speech bubble on NHS Blue, opaque RGB."""
    background = (0x00, 0x5E, 0xB8)
    coverage = _rasterise(_glyph, size)
    rows = []
    for row in coverage:
        line = bytearray()
        for c in row:
            line += bytes(round(b + (255 - b) * c) for b in background)
        rows.append(bytes(line))
    return encode_png(size, size, rows, alpha=False)


@cache
def outline_icon(size: int = 32) -> bytes:
    """The outline icon: the same bubble in white on a transparent background, RGBA."""
    coverage = _rasterise(_glyph, size)
    rows = [b"".join(bytes((255, 255, 255, round(255 * c))) for c in row) for row in coverage]
    return encode_png(size, size, rows, alpha=True)


def encode_png(width: int, height: int, rows: list[bytes], *, alpha: bool) -> bytes:
    """A minimal PNG: 8-bit RGB (colour type 2) or RGBA (6), filter 0 on every row, one IDAT."""
    channels = 4 if alpha else 3
    if len(rows) != height or any(len(r) != width * channels for r in rows):
        raise ValueError("rows do not match width, height and channels")
    raw = b"".join(b"\x00" + r for r in rows)
    header = struct.pack(">IIBBBBB", width, height, 8, 6 if alpha else 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b"")
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _rasterise(inside: Callable[[float, float], bool], size: int, samples: int = 4) -> list[list[float]]:
    """Coverage (0..1) of each pixel by the shape. Pixels whose corners disagree are sampled `samples`² times
    (cheap anti-aliasing); the rest are wholly in or out. Good enough for shapes wider than a pixel."""
    corner = [[inside(px / size, py / size) for px in range(size + 1)] for py in range(size + 1)]
    step = 1.0 / (size * samples)
    grid = []
    for py in range(size):
        row = []
        for px in range(size):
            corners = {corner[py][px], corner[py][px + 1], corner[py + 1][px], corner[py + 1][px + 1]}
            centre = inside((px + 0.5) / size, (py + 0.5) / size)
            if len(corners) == 1 and centre in corners:
                row.append(1.0 if centre else 0.0)
                continue
            hits = 0
            for sy in range(samples):
                y = (py * samples + sy + 0.5) * step
                for sx in range(samples):
                    hits += inside((px * samples + sx + 0.5) * step, y)
            row.append(hits / (samples * samples))
        grid.append(row)
    return grid


def _glyph(x: float, y: float) -> bool:
    """A speech bubble with a tail, three dots cut out; unit square, y down, with a margin all round."""
    for cx in (0.34, 0.5, 0.66):
        if (x - cx) ** 2 + (y - 0.43) ** 2 <= 0.06**2:
            return False
    return _rounded_rect(x, y, 0.12, 0.18, 0.88, 0.68, 0.12) or _triangle(
        x, y, (0.26, 0.64), (0.46, 0.64), (0.22, 0.86)
    )


def _rounded_rect(x: float, y: float, x0: float, y0: float, x1: float, y1: float, r: float) -> bool:
    if not (x0 <= x <= x1 and y0 <= y <= y1):
        return False
    nx = min(max(x, x0 + r), x1 - r)
    ny = min(max(y, y0 + r), y1 - r)
    return (x - nx) ** 2 + (y - ny) ** 2 <= r * r


def _triangle(x: float, y: float, a: tuple[float, float], b: tuple[float, float], c: tuple[float, float]) -> bool:
    def side(p: tuple[float, float], q: tuple[float, float]) -> float:
        return (q[0] - p[0]) * (y - p[1]) - (q[1] - p[1]) * (x - p[0])

    d1, d2, d3 = side(a, b), side(b, c), side(c, a)
    has_neg = d1 < 0 or d2 < 0 or d3 < 0
    has_pos = d1 > 0 or d2 > 0 or d3 > 0
    return not (has_neg and has_pos)
