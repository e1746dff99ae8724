"""Intro-round matching at scale: a year of weekly rounds for 10,000 members, then one more, timed and scored."""

from __future__ import annotations

import itertools
import random
import statistics
import time

from bench.common import Figure
from handlers.matching import Candidate, Match, RoundFigures, figures, match, upper_bound_cross_both

PROFESSIONS = {
    "nurse": 40,
    "doctor": 20,
    "healthcare assistant": 10,
    "pharmacist": 6,
    "physiotherapist": 5,
    "midwife": 5,
    "manager": 4,
    "occupational therapist": 3,
    "paramedic": 3,
    "psychologist": 2,
    "healthcare scientist": 1,
    "patient safety specialist": 1,
}
ORGANISATIONS = [f"trust {i + 1:02d}" for i in range(30)]
UNKNOWN_PROFESSION = 0.06  # people who have not filled in their profile
UNKNOWN_ORGANISATION = 0.10


def community(n: int, *, seed: int) -> list[Candidate]:
    """Skewed like a real CoP: nurses ~40%, doctors 20%, …; trust sizes Zipf-like (the largest ~25%)."""
    rng = random.Random(seed)
    professions = list(PROFESSIONS)
    weights = list(PROFESSIONS.values())
    trust_weights = [1 / (rank + 1) for rank in range(len(ORGANISATIONS))]
    out = []
    for member_id in range(1, n + 1):
        profession = rng.choices(professions, weights)[0]
        organisation = rng.choices(ORGANISATIONS, trust_weights)[0]
        out.append(
            Candidate(
                member_id,
                None if rng.random() < UNKNOWN_PROFESSION else profession,
                None if rng.random() < UNKNOWN_ORGANISATION else organisation,
            )
        )
    return out


def random_pairing(candidates: list[Candidate], *, seed: int) -> Match:
    """The Donut-like baseline: shuffle, pair neighbours, the odd one out joins the last pair."""
    ids = [c.member_id for c in candidates]
    random.Random(seed).shuffle(ids)
    groups = [tuple(ids[i : i + 2]) for i in range(0, len(ids) - len(ids) % 2, 2)]
    if len(ids) % 2:
        groups[-1] = (*groups[-1], ids[-1])
    return Match(groups=tuple(groups))


def run(*, quick: bool) -> list[Figure]:
    n, rounds = (1_000, 10) if quick else (10_000, 52)
    candidates = community(n, seed=2024)
    history: dict[frozenset[int], int] = {}
    round_times = []
    history_repeats = 0
    for round_number in range(1, rounds + 1):
        started = time.perf_counter()
        result = match(candidates, history, seed=round_number, current_round=round_number)
        round_times.append(time.perf_counter() - started)
        history_repeats += figures(result, candidates, history).repeat_meetings
        for group in result.groups:
            for a, b in itertools.combinations(group, 2):
                history[frozenset((a, b))] = round_number

    now = rounds + 1
    started = time.perf_counter()
    ours = match(candidates, history, seed=now, current_round=now)
    elapsed = time.perf_counter() - started
    started = time.perf_counter()
    baseline = random_pairing(candidates, seed=now)
    baseline_elapsed = time.perf_counter() - started
    mine, theirs = figures(ours, candidates, history), figures(baseline, candidates, history)
    bound = upper_bound_cross_both(candidates)
    size = f"{n:,} members, {len(history):,} past pairs from {rounds} rounds"
    bound_note = (
        "bound = min(k//2, k - largest profession, k - largest trust, per-cell Tutte-Berge terms) over the "
        f"k={sum(1 for c in candidates if c.profession and c.organisation):,} with both known: {bound:,} groups"
    )

    def shares(label: str, f: RoundFigures) -> list[Figure]:
        return [
            Figure("matching", f"{label}: cross-both share of groups", 100 * f.cross_both_share, "%"),
            Figure("matching", f"{label}: cross-profession share", 100 * f.cross_profession_share, "%"),
            Figure("matching", f"{label}: cross-organisation share", 100 * f.cross_organisation_share, "%"),
            Figure("matching", f"{label}: distinct profession pairs met", f.distinct_profession_pairs, "pairs"),
        ]

    return [
        Figure("matching", f"round {now} time", elapsed, "s", "< 2 s", elapsed < 2.0, size),
        Figure(
            "matching",
            f"slowest of rounds 1-{rounds}",
            max(round_times),
            "s",
            "< 2 s",
            max(round_times) < 2.0,
            f"median {statistics.median(round_times):.3f} s",
        ),
        Figure(
            "matching", f"round {now} repeat meetings", mine.repeat_meetings, "meetings", "0", mine.repeat_meetings == 0
        ),
        Figure(
            "matching",
            f"repeat meetings over rounds 1-{rounds}",
            history_repeats,
            "meetings",
            "0",
            history_repeats == 0,
        ),
        Figure(
            "matching",
            "cross-both groups vs upper bound",
            100 * mine.cross_both_groups / bound if bound else 100.0,
            "% of bound",
            ">= 95%",
            mine.cross_both_groups >= 0.95 * bound,
            f"{mine.cross_both_groups:,} of {bound:,}; {bound_note}",
        ),
        *shares("copbot", mine),
        Figure("matching", "random pairing: repeat meetings", theirs.repeat_meetings, "meetings", note="Donut-like"),
        Figure(
            "matching",
            "random pairing: cross-both groups vs upper bound",
            100 * theirs.cross_both_groups / bound if bound else 100.0,
            "% of bound",
            note=f"{theirs.cross_both_groups:,} of {bound:,}",
        ),
        *shares("random pairing", theirs),
        Figure("matching", "random pairing: time", baseline_elapsed, "s"),
    ]
