"""Story search at scale: p50/p95 latency over generated stories on SQLite FTS5 (and PostgreSQL tsvector), the
speed-up over a LIKE scan, and capture throughput through the core.

Stories are generated (realistic NHS "what's working" prose from templates, seeded) and bulk-loaded with plain SQL;
the FTS5 index is then built in one pass ('rebuild', 'optimize') with the migration's own triggers put back.
Queries go through the one storage function the `/cop stories` command uses, as a member of three communities.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlmodel import Session

from bench.common import Figure, median, percentile
from handlers import consent
from handlers.app import CopBot
from handlers.context import CoreConfig
from handlers.ports import Actor, ChannelRef, Message
from storage import repository as repo
from storage import stories as store
from storage.engine import make_engine, migrate

READERS = consent.readers()  # the one consent rule, as the app applies it

BENCH = "stories"
TARGET_P95_MS = 25.0
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
COMMUNITIES = 50
VIEWER_COMMUNITIES = (1, 2, 3)
NOW = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC)

WARDS = (
    "Ward 7", "the stroke unit", "the emergency department", "the maternity unit", "critical care", "theatres",
    "the frailty ward", "the children's ward", "outpatients", "the district nursing team", "the discharge lounge",
    "the acute medical unit", "the renal unit", "the mental health ward", "the oncology day unit",
    "the orthopaedic ward", "the respiratory ward", "the cardiac unit", "the neonatal unit", "the community hospital",
    "the GP practice", "the endoscopy suite", "the burns unit", "the hospice", "the urgent treatment centre",
)  # fmt: skip
ROLES = (
    "staff nurse", "healthcare assistant", "pharmacist", "physiotherapist", "junior doctor", "consultant", "midwife",
    "occupational therapist", "ward clerk", "porter", "dietitian", "paramedic", "student nurse", "matron",
    "speech and language therapist", "radiographer", "housekeeper", "discharge coordinator",
)  # fmt: skip
INTERVENTIONS = (
    ("safety huddle", "teamwork"), ("bedside handover", "handover"), ("SBAR handover", "handover"),
    ("insulin double check", "medicines"), ("medicines round tabard", "medicines"), ("NEWS2 escalation prompt",
    "deterioration"), ("sepsis screening tool", "sepsis"), ("falls sensor mat", "falls"), ("bay tagging", "falls"),
    ("hand hygiene audit", "infection-prevention"), ("pressure ulcer skin bundle", "pressure-ulcers"),
    ("discharge checklist", "discharge"), ("what matters to you board", "patient-involvement"),
    ("wellbeing hub", "staff-wellbeing"), ("learning from excellence card", "learning-culture"),
    ("electronic observations alert", "digital"), ("fresh eyes check", "maternity"), ("calm room", "mental-health"),
    ("safeguarding champion", "safeguarding"), ("human factors debrief", "human-factors"),
    ("intentional rounding", "falls"), ("red tray system", "patient-involvement"), ("hydration station", "teamwork"),
    ("stop the line call", "human-factors"), ("anticoagulant chart", "medicines"), ("delirium screen", "deterioration"),
    ("catheter passport", "infection-prevention"), ("comfort round", "pressure-ulcers"),
    ("virtual ward call", "digital"), ("family liaison role", "communication"),
)  # fmt: skip
PROBLEMS = (
    "several falls at night", "late escalation of deteriorating patients", "missed insulin doses",
    "rushed handovers at shift change", "long waits for discharge medicines", "pressure damage on admission",
    "confusion about who was in charge", "interrupted medicines rounds", "low morale after a busy winter",
    "families feeling left out of decisions", "delays in sepsis antibiotics", "catheter infections",
    "lost property and distressed relatives", "agency staff not knowing the ward", "alarm fatigue",
)  # fmt: skip
WHY = (
    "it takes two minutes and everyone can see it", "it gives junior staff permission to speak up",
    "the whole team agreed it together", "it is built into the routine rather than added on top",
    "patients and families remind us", "it replaces three forms with one", "the pharmacist is there at the right time",
    "it makes the safe thing the easy thing", "we review it every month and change what doesn't work",
    "it is visual, so bank staff pick it up on their first shift",
)  # fmt: skip
IMPACTS = (
    "falls halved over six months", "no missed insulin doses since March", "escalations now happen within the hour",
    "handover time dropped by ten minutes", "patients go home before noon more often", "staff survey scores improved",
    "pressure ulcers fell to the lowest on record", "families tell us they feel listened to",
    "antibiotics are given within the hour for most patients", "sickness absence went down",
)  # fmt: skip
EXTRA = (
    "quietly", "every shift", "at 08:00 and 20:00", "on the whiteboard", "with a laminated card",
    "at the nurses' station", "during the ward round", "with the night team", "on weekends too",
    "for every new admission",
)  # fmt: skip


def _stories(n: int, *, seed: int) -> Iterator[tuple[object, ...]]:
    """Rows for the story table: realistic, varied, seeded (~90 words each)."""
    rng = random.Random(seed)
    choice, rand = rng.choice, rng.random
    for i in range(1, n + 1):
        ward, role, role2 = choice(WARDS), choice(ROLES), choice(ROLES)
        thing, theme = choice(INTERVENTIONS)
        thing2, theme2 = choice(INTERVENTIONS)
        problem, why, impact, extra = choice(PROBLEMS), choice(WHY), choice(IMPACTS), choice(EXTRA)
        title = f"The {thing} on {ward}"
        situation = (
            f"On {ward} we had {problem}. A {role} noticed the pattern and raised it at the morning meeting, "
            f"and the {role2} offered to help."
        )
        action = (
            f"We introduced a {thing} {extra}. Each {role} uses it, and the {role2} checks it together with the "
            f"{thing2}. New starters learn it on their first day."
        )
        scope = "all_communities" if rand() < 0.25 else ("safety_team" if rand() < 0.07 else "community")
        r = rand()
        status = "published" if r < 0.95 else ("withdrawn" if r < 0.98 else "awaiting_author")
        when = NOW - dt.timedelta(minutes=(n - i) * 3)
        stamp = when.replace(tzinfo=None).isoformat(sep=" ")
        yield (
            i, 1 + i % COMMUNITIES, 1 + i % 400, 1 + i % 400, title, situation, action,
            f"It works because {why}.", f"The difference: {impact}.", "", f"{theme},{theme2}", scope, 0, "form",
            status, stamp, stamp, stamp if status != "awaiting_author" else None,
        )  # fmt: skip


_COLUMNS = (
    "id, community_id, author_member_id, capturer_member_id, title, situation, action, why_it_works, impact, "
    "recognised, themes, consent_scope, show_name, source, status, created_at, updated_at, published_at"
)
_INSERT = "INSERT INTO story (" + _COLUMNS + ") VALUES (" + ", ".join(["?"] * 18) + ")"  # noqa: S608 (constants)


def _queries(count: int, *, seed: int) -> list[str]:
    """Varied searches people would type: topic words, two words, prefixes, phrases, rare words, misses."""
    rng = random.Random(seed)
    words = sorted({w.strip(".,'").lower() for t, _ in INTERVENTIONS for w in t.split() if len(w) > 3})
    words += ["falls", "insulin", "sepsis", "handover", "pharmacist", "porter", "renal", "burns", "hospice", "morale"]
    phrases = [t for t, _ in INTERVENTIONS if " " in t] + ["first day", "morning meeting", "speak up"]
    rare = ["hydration", "passport", "tabard", "liaison", "endoscopy", "neonatal", "weekends", "laminated"]
    out: list[str] = []
    for i in range(count):
        kind = i % 6
        if kind == 0:
            out.append(rng.choice(words))
        elif kind == 1:
            out.append(f"{rng.choice(words)} {rng.choice(words)}")
        elif kind == 2:
            out.append(rng.choice(words)[:4] + "*")
        elif kind == 3:
            out.append(f'"{rng.choice(phrases)}"')
        elif kind == 4:
            out.append(rng.choice(rare))
        else:
            out.append(f"{rng.choice(rare)} {rng.choice(WARDS).split()[-1]}")
    return out


def _seed_people(engine: Engine) -> int:
    """Communities 1..50, members 1..400 (the viewer belongs to three communities); returns the viewer's id."""
    with Session(engine) as db:
        people = [
            repo.ensure_member(db=db, platform="bench", workspace_id="W", user_id=f"U{i}", now=NOW)
            for i in range(1, 401)
        ]
        for c in range(1, COMMUNITIES + 1):
            repo.create_community(
                db=db, platform="bench", workspace_id="W", slug=f"c{c}", name=f"Community {c}", purpose="",
                channel_id=f"C{c}", channel_name=f"cop-c{c}", timezone="Europe/London", creator=people[c], now=NOW,
            )  # fmt: skip
        viewer = repo.ensure_member(db=db, platform="bench", workspace_id="W", user_id="viewer", now=NOW)
        for c in VIEWER_COMMUNITIES:
            community = repo.community_by_channel(db=db, platform="bench", workspace_id="W", channel_id=f"C{c}")
            assert community is not None
            repo.add_membership(db=db, community=community, member=viewer, now=NOW)
        db.commit()
        assert viewer.id is not None
        return viewer.id


def _load_sqlite(path: Path, n: int) -> None:
    """Bulk-load n stories with the FTS triggers set aside, then build the index in one pass and put them back."""
    raw = sqlite3.connect(path)
    try:
        raw.execute("PRAGMA synchronous = OFF")
        raw.execute("PRAGMA cache_size = -400000")
        triggers = [
            r[0] for r in raw.execute("SELECT sql FROM sqlite_master WHERE type='trigger' AND tbl_name='story'")
        ]
        for (name,) in raw.execute(
            "SELECT name FROM sqlite_master WHERE type='trigger' AND tbl_name='story'"
        ).fetchall():
            raw.execute(f'DROP TRIGGER "{name}"')
        rows = _stories(n, seed=7)
        while batch := [row for _, row in zip(range(50_000), rows, strict=False)]:
            raw.executemany(_INSERT, batch)
        raw.commit()
        raw.execute("INSERT INTO story_fts(story_fts) VALUES ('rebuild')")
        raw.execute("INSERT INTO story_fts(story_fts) VALUES ('optimize')")
        for sql in triggers:
            raw.execute(sql)
        raw.commit()
        raw.execute("ANALYZE")
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        raw.close()


def _time_queries(engine: Engine, viewer: int, queries: list[str]) -> tuple[list[float], int]:
    found = 0
    samples: list[float] = []
    with Session(engine) as db:
        for words in queries[:20]:  # warm the page cache, as a running server's is
            store.search_stories(
                db=db, platform="bench", workspace_id="W", viewer_member_id=viewer, readers=READERS, words=words
            )
        for words in queries:
            started = time.perf_counter()
            hits = store.search_stories(
                db=db, platform="bench", workspace_id="W", viewer_member_id=viewer, readers=READERS, words=words
            )
            samples.append((time.perf_counter() - started) * 1000)
            found += bool(hits)
    return samples, found


def _like_ms(engine: Engine, viewer: int, words: list[str]) -> list[float]:
    """The same searches as a LIKE scan over every text field (what you'd write without a search index)."""
    fields = ("s.title", "s.situation", "s.action", "s.why_it_works", "s.impact", "s.themes")
    samples: list[float] = []
    with engine.connect() as conn:
        for word in words:
            match = " OR ".join(f"{f} LIKE :p" for f in fields)
            sql = text(
                f"SELECT s.id FROM story s JOIN community c ON c.id = s.community_id WHERE ({match}) "  # noqa: S608
                f"AND {store._visible_sql(READERS)} ORDER BY s.published_at DESC LIMIT 10"
            )
            params = {
                "p": f"%{word}%",
                "platform": "bench",
                "workspace_id": "W",
                "viewer": viewer,
                "fac": "facilitator",
            }
            started = time.perf_counter()
            conn.execute(sql, params).all()
            samples.append((time.perf_counter() - started) * 1000)
    return samples


class _QuietPlatform:
    """A ChatPlatform that accepts everything (capture throughput measures the core and the database)."""

    name = "bench"

    def create_channel(self, *, name: str, topic: str, purpose: str) -> ChannelRef:
        return ChannelRef(id=name, name=name)

    def find_channel(self, *, name: str) -> ChannelRef | None:
        return None

    def invite(self, *, channel_id: str, user_ids: list[str]) -> None:
        return None

    def remove(self, *, channel_id: str, user_id: str) -> None:
        return None

    def archive_channel(self, *, channel_id: str) -> None:
        return None

    def post(self, *, channel_id: str, message: Message) -> str:
        return uuid.uuid4().hex

    def send_dm(self, *, user_id: str, message: Message) -> str:
        return uuid.uuid4().hex

    def send_group_dm(self, *, user_ids: list[str], message: Message) -> str:
        return uuid.uuid4().hex

    def update_message(self, *, channel_id: str, message_id: str, message: Message) -> None:
        return None

    def upload_file(self, *, user_id: str, filename: str, content: bytes, title: str) -> None:
        return None


class _Clock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


def _capture_rate(engine: Engine, count: int) -> tuple[float, int]:
    """Stories per second through the form path (PII guard, insert + FTS trigger, card, thanks), one unit each."""
    bot = CopBot(engine=engine, platform=_QuietPlatform(), clock=_Clock(), config=CoreConfig())
    actor = Actor(platform="bench", workspace_id="W", user_id="U5", display_name="U5")
    rows = _stories(count, seed=99)
    saved = 0
    started = time.perf_counter()
    for row in rows:
        values = {
            "community": "1", "title": str(row[4]), "situation": str(row[5]), "action": str(row[6]),
            "why_it_works": str(row[7]), "impact": str(row[8]), "recognised": "@U7", "themes": str(row[10]),
            "consent_scope": "community", "show_name": "",
        }  # fmt: skip
        replies = bot.handle_submission(actor=actor, form_id="story", values=values)
        saved += any(r.message is not None and "is shared in" in r.message.text for r in replies)
    return count / (time.perf_counter() - started), saved


@contextlib.contextmanager
def _pg_schema() -> Iterator[Engine | None]:
    try:
        admin = create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with admin.begin() as conn:
            schema = f"bench_{uuid.uuid4().hex[:8]}"
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception:  # no PostgreSQL here: the SQLite figures stand alone
        yield None
        return
    engine = create_engine(PG_URL, connect_args={"options": f"-csearch_path={schema}"})
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _load_postgresql(engine: Engine, n: int) -> None:
    """COPY n stories (the tsvector column fills itself), with the GIN index built after the load."""
    with engine.begin() as conn:
        conn.execute(text(f"DROP INDEX {store.PG_SEARCH_INDEX}"))
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cursor, cursor.copy(f"COPY story ({_COLUMNS}) FROM STDIN") as copy:
            for row in _stories(n, seed=7):
                copy.write_row((*row[:12], bool(row[12]), *row[13:]))
        conn.execute(text(f"CREATE INDEX {store.PG_SEARCH_INDEX} ON story USING GIN ({store.PG_VECTOR_COLUMN})"))
        conn.execute(text("SELECT setval(pg_get_serial_sequence('story', 'id'), (SELECT max(id) FROM story))"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in ("community", "member", "membership"):  # as autovacuum would have by now
            conn.execute(text(f"ANALYZE {table}"))
        conn.execute(text("VACUUM ANALYZE story"))


def run(*, quick: bool) -> list[Figure]:
    """Search latency on SQLite (target p95 < 25 ms) and PostgreSQL, the LIKE comparison, capture throughput."""
    n = 50_000 if quick else 1_000_000
    n_pg = 20_000 if quick else 200_000
    queries = _queries(60 if quick else 200, seed=3)
    like_words = [q.strip('"*').split()[0] for q in queries[:: max(1, len(queries) // (4 if quick else 8))]]
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stories.db"
        engine = make_engine(f"sqlite:///{path}")
        migrate(engine)
        viewer = _seed_people(engine)
        started = time.perf_counter()
        _load_sqlite(path, n)
        load_s = time.perf_counter() - started
        samples, found = _time_queries(engine, viewer, queries)
        like = _like_ms(engine, viewer, like_words)
        fts_same = _time_queries(engine, viewer, like_words)[0]
        rate, saved = _capture_rate(engine, 100 if quick else 500)
        size_mb = sum(p.stat().st_size for p in Path(tmp).iterdir()) / 1e6
        engine.dispose()
    p95 = percentile(samples, 95)
    figures += [
        Figure(BENCH, f"SQLite FTS5 search p50, {n:,} stories", median(samples), "ms",
               note=f"{len(queries)} varied queries, {found} with results; loaded in {load_s:.0f} s, "
                    f"{size_mb:,.0f} MB"),
        Figure(BENCH, f"SQLite FTS5 search p95, {n:,} stories", p95, "ms", target=f"< {TARGET_P95_MS:g} ms",
               ok=p95 < TARGET_P95_MS),
        Figure(BENCH, "SQLite LIKE scan (same words) median", median(like), "ms", note=f"{len(like)} words"),
        Figure(BENCH, "speed-up of FTS5 over the LIKE scan (medians)", median(like) / max(median(fts_same), 1e-6), "x"),
        Figure(BENCH, "capture throughput through the core (form path, SQLite)", rate, "stories/s",
               ok=saved == (100 if quick else 500), note=f"into the {n:,}-story database; {saved} published"),
    ]  # fmt: skip
    with _pg_schema() as pg:
        if pg is None:
            figures.append(Figure(BENCH, "PostgreSQL search", 0, "ms", note="skipped: PostgreSQL not reachable"))
            return figures
        migrate(pg)
        viewer = _seed_people(pg)
        started = time.perf_counter()
        _load_postgresql(pg, n_pg)
        load_s = time.perf_counter() - started
        samples, found = _time_queries(pg, viewer, queries)
        like = _like_ms(pg, viewer, like_words)
        fts_same = _time_queries(pg, viewer, like_words)[0]
    figures += [
        Figure(BENCH, f"PostgreSQL tsvector search p50, {n_pg:,} stories", median(samples), "ms",
               note=f"{found} of {len(queries)} with results; loaded in {load_s:.0f} s"),
        Figure(BENCH, f"PostgreSQL tsvector search p95, {n_pg:,} stories", percentile(samples, 95), "ms"),
        Figure(BENCH, "PostgreSQL speed-up over its LIKE scan (medians)", median(like) / max(median(fts_same), 1e-6),
               "x", note=f"LIKE median {median(like):.0f} ms"),
    ]  # fmt: skip
    return figures
