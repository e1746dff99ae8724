"""PII guard throughput: `scan` over generated clinical stories, some seeded with identifiers, typed plainly and pasted.

The plain corpus is unchanged across versions so its figures compare run to run; the pasted corpus is the same
stories as they arrive from PDFs, phones and word processors (no-break spaces, curly quotes, en dashes), with the
identifiers disguised by look-alike characters.
"""

from __future__ import annotations

import random
import time

from bench.common import Figure, percentile
from handlers.privacy import scan

# Inputs built to make a backtracking pattern blow up (long runs of what an identifier starts with); `scan` must stay
# linear on each: the tests check what it finds, `linearity` here measures how its time grows.
ADVERSARIAL: list[str] = [
    "9" * 200_000,
    "a" * 200_000 + "@",
    "1 " * 100_000,
    "DOB " * 50_000,
    "MRN " * 50_000 + "1",
    "AB 12 " * 40_000,
    "+44 " * 50_000,
    "a1 " * 70_000,
    "near " * 40_000,
    "\u200b" * 200_000,
    "\uff19" * 200_000,
    "\u00a0" * 200_000,
    "9\u00a0" * 100_000,
    "1\u200b" * 100_000,
    "943.476." * 25_000,
    "9." * 100_000,
    "0 - " * 50_000,
    "\u2474" * 100_000,
    "a\uff20" * 100_000,
    " \u200b" * 100_000,
    "a  " * 100_000 + "\u00e9",
    "9  " * 100_000,
]

SEED = 20240601
SEEDED_SHARE = 0.05  # about one story in twenty carries an identifier, as a careless paste might

SENTENCES = [
    "On Ward 7B we moved the safety huddle to 14:30 so the twilight staff could join.",
    "AMU now does a 10-minute board round at 08:00 and again at 20:00.",
    "Bay 3 bed 12 is kept free for the sickest patient so the nurse can see them from the station.",
    "We give paracetamol 1g QDS unless the patient weighs under 50 kg.",
    "Gentamicin is dosed at 5 mg/kg and the second dose waits for the level.",
    "0.9% saline 1000ml over 8 hours is now pre-printed on the fluid chart.",
    "Since we started the sepsis trolley, antibiotics within 1 hour rose from 62% to 91%.",
    "NEWS2 of 5 or more triggers a review within 30 minutes by the FY1 or the outreach team.",
    "Pharmacy can be reached on ext 4567 or bleep 2345 between 9am and 5pm.",
    "The 4-hour target in ED improved once we streamed minors at triage.",
    "Blood pressure 120/80 is no longer the trigger; we use the patient's own baseline.",
    "On 12/03/2024 we started the new handover sheet and nobody has looked back.",
    "The wristband check is done at every transfer, and the hospital number is read aloud.",
    "Shifts run 0800-2000 and 2000-0800, with the huddle at each change.",
    "We had a near miss with insulin and it was reported on Datix the same day.",
    "Harm-free care on the safety thermometer was 96% in March.",
    "The family were thanked and the learning went to the divisional meeting.",
    "In 2023 we had 14 falls on the ward; in 2024 it was 6.",
    "A 12-lead ECG within 10 minutes of arrival for every chest pain.",
    "Ward B1 1st floor and Ward B2 2nd floor now share one resus trolley.",
]
IDENTIFIERS = [
    "NHS no 943 476 5919",
    "9990000018",
    "CHI 0607230002",
    "lives at SW1A 1AA",
    "home to m1 1ae",
    "NI AB 12 34 56 C",
    "daughter on 07700 900123",
    "ring +44 20 7946 0018",
    "email john.smith@example.com",
    "DOB 12/03/1956",
    "MRN RXX123456",
]

# The same kinds as IDENTIFIERS, as a paste or a phone keyboard delivers them.
LOOK_ALIKE_IDENTIFIERS = [
    "NHS\u00a0no 943\u2009476\u20095919",
    "\uff19\uff19\uff19\uff10\uff10\uff10\uff10\uff10\uff11\uff18",
    "CHI 060723\u00a00002",
    "lives at SW1A\u00a01AA",
    "home to \uff4d\uff11 \uff11\uff41\uff45",
    "NI AB\u00a012\u00a034\u00a056\u00a0C",
    "daughter on 07700.900.123",
    "ring \uff0b44 20 7946 0018",
    "email john.smith\uff20example.com",
    "DOB 12\u201303\u20131956",
    "MRN RXX1234\u200b56",
    "943\u2013476\u20135919",
]
# What pasting does to clean prose: typographic quotes and dashes, no-break spaces before units.
PASTED = str.maketrans({"'": "\u2019", "-": "\u2013"})


def corpus(n: int, *, rng: random.Random, pasted: bool = False) -> tuple[list[str], list[bool]]:
    """`n` stories of 3-8 sentences; the flags say which were seeded with an identifier."""
    identifiers = LOOK_ALIKE_IDENTIFIERS if pasted else IDENTIFIERS
    stories: list[str] = []
    seeded: list[bool] = []
    for _ in range(n):
        parts = rng.choices(SENTENCES, k=rng.randint(3, 8))
        if pasted:
            parts = [p.translate(PASTED).replace(" mg", "\u00a0mg").replace(" minutes", "\u00a0minutes") for p in parts]
        has_pii = rng.random() < SEEDED_SHARE
        if has_pii:
            parts.insert(rng.randrange(len(parts) + 1), f"({rng.choice(identifiers)})")
        stories.append(" ".join(parts))
        seeded.append(has_pii)
    return stories, seeded


def run(*, quick: bool) -> list[Figure]:
    """Scan throughput (KB/s, stories/s), per-story p99, and detection, on the plain and the pasted corpus; and
    how scan time grows on adversarial input."""
    n = 2_000 if quick else 10_000
    figures = measure(*corpus(n, rng=random.Random(SEED)), label="")
    figures += measure(*corpus(n, rng=random.Random(SEED), pasted=True), label=" (pasted look-alikes)")
    figures.append(linearity(quick=quick))
    return figures


def linearity(*, quick: bool) -> Figure:
    """The worst growth of scan time when an adversarial input doubles (2.0 is linear; backtracking is 4 or more),
    each the best of three runs at a quarter and at half of the input, so noise counts against nothing."""

    def best(text: str) -> float:
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            scan(text)
            runs.append(time.perf_counter() - t0)
        return min(runs)

    cases = ADVERSARIAL[::4] if quick else ADVERSARIAL
    ratios = []
    for text in cases:
        quarter, half = text[: len(text) // 4], text[: len(text) // 2]
        ratios.append(best(half) / max(best(quarter), 1e-6))
    worst = max(ratios)
    note = f"{len(cases)} adversarial inputs of up to {max(len(t) for t in cases) // 2:,} characters"
    return Figure(
        "privacy", "scan time growth when input doubles (worst)", worst, "x", "<= 3x (linear)", worst <= 3, note
    )


def measure(stories: list[str], seeded: list[bool], *, label: str) -> list[Figure]:
    """The five figures for one corpus; `label` tells the pasted corpus's apart."""
    n = len(stories)
    total_kb = sum(len(s.encode("utf-8")) for s in stories) / 1024

    scan(stories[0])  # warm the regex caches outside the timing
    per_story: list[float] = []
    flagged: list[bool] = []
    started = time.perf_counter()
    for story in stories:
        t0 = time.perf_counter()
        hits = scan(story)
        per_story.append(time.perf_counter() - t0)
        flagged.append(bool(hits))
    elapsed = time.perf_counter() - started

    missed = sum(1 for s, f in zip(seeded, flagged, strict=True) if s and not f)
    false_alarms = sum(1 for s, f in zip(seeded, flagged, strict=True) if f and not s)
    kb_per_s = total_kb / elapsed
    stories_per_s = n / elapsed
    p99_ms = percentile(per_story, 99) * 1000
    note = f"{n:,} stories, {total_kb:,.0f} KB, {sum(seeded)} seeded"
    return [
        Figure("privacy", f"scan throughput{label}", kb_per_s, "KB/s", ">= 500 KB/s", kb_per_s >= 500, note),
        Figure(
            "privacy",
            f"scan rate{label}",
            stories_per_s,
            "stories/s",
            ">= 1,000 stories/s",
            stories_per_s >= 1000,
            note,
        ),
        Figure("privacy", f"scan p99 per story{label}", p99_ms, "ms", "< 5 ms", p99_ms < 5, note),
        Figure("privacy", f"seeded stories missed{label}", missed, "stories", "0", missed == 0, note),
        Figure("privacy", f"clean stories flagged{label}", false_alarms, "stories", "0", false_alarms == 0, note),
    ]
