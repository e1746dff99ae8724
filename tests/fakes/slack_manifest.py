"""Read manifest.yaml: what the Slack app declares (commands, shortcuts, events, scopes) and schema validation."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from tests.reference import reference_path

MANIFEST_PATH = Path(__file__).resolve().parents[2] / "manifest.yaml"
_SCHEMA_URL = "https://raw.githubusercontent.com/slackapi/manifest-schema/v0.5.0/schemas/manifest.schema.{}.json"


@dataclass(frozen=True)
class Declared:
    """What manifest.yaml promises Slack the app handles."""

    commands: set[str]
    shortcut_callback_ids: set[str]
    bot_events: set[str]
    bot_scopes: frozenset[str] = frozenset()


def load(manifest_path: Path | str = MANIFEST_PATH) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(Path(manifest_path).read_text())
    return data


def declared(manifest_path: Path | str = MANIFEST_PATH) -> Declared:
    """Commands (e.g. "/cop"), shortcut callback_ids and bot events (e.g. "message.im") declared in the manifest."""
    manifest = load(manifest_path)
    features = manifest.get("features", {})
    settings = manifest.get("settings", {})
    return Declared(
        commands={c["command"] for c in features.get("slash_commands", [])},
        shortcut_callback_ids={s["callback_id"] for s in features.get("shortcuts", [])},
        bot_events=set(settings.get("event_subscriptions", {}).get("bot_events", [])),
        bot_scopes=frozenset(manifest.get("oauth_config", {}).get("scopes", {}).get("bot", [])),
    )


def _schemas() -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    base = reference_path("slack-manifest-schema")
    root = json.loads((base / "manifest.schema.json").read_text())
    versions = {
        version: json.loads((base / "schemas" / f"manifest.schema.{version}.json").read_text())
        for version in ("1.0.0", "2.0.0")
    }
    return root, versions


def validator() -> Draft7Validator:
    """A validator for slackapi/manifest-schema v0.5.0 whose remote $refs resolve to the local copies (offline)."""
    root, versions = _schemas()
    registry: Registry[Any] = Registry().with_resources(
        (_SCHEMA_URL.format(version), Resource.from_contents(schema, default_specification=DRAFT7))
        for version, schema in versions.items()
    )
    return Draft7Validator(root, registry=registry)


def errors(manifest: dict[str, Any]) -> list[str]:
    """Schema errors of a manifest document, as readable strings (empty = valid)."""
    if validator().is_valid(manifest):
        return []
    # The root schema is a oneOf over major versions, whose own messages repeat the whole document; explain the
    # failure with the schema of the version the manifest claims (v1 when absent, as the router does).
    _, versions = _schemas()
    major = (manifest.get("_metadata") or {}).get("major_version", 1)
    version_schema = versions.get(f"{major}.0.0")
    found = []
    if version_schema is not None:
        for error in Draft7Validator(version_schema).iter_errors(manifest):
            where = "/".join(str(p) for p in error.absolute_path) or "(root)"
            found.append(f"{where}: {error.message}")
    return found or [f"(root): not a valid Slack app manifest (major_version {major!r})"]
