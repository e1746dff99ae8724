"""Pure matching for intro rounds: who meets whom, chosen to cross boundaries and never to repeat.

How a round is matched
----------------------
Everyone taking part is put in a group of two; when the count is odd, exactly one group is a trio. A community
of one gets no group: that person is returned as `unpaired` so they can be sent a kind note instead. Nobody is
ever left out, nobody appears twice, and nobody is grouped with themselves.

What "better" means. A grouping is judged by four things, in strict order (a lower one only ever breaks ties of
the ones above it):

1. fewest **repeat meetings**: two people in a group who have met before (a trio holds three meetings);
2. most **cross-boundary groups**: every two people in the group differ in profession AND in organisation;
3. most groups where every two people differ in profession OR in organisation;
4. among the repeats that cannot be avoided, those who met **longest ago** (the sum of rounds since they last met).

Remaining ties are broken at random by `random.Random(seed)`, so the same people, history and seed always give
the same groups, whatever order the people are passed in, and another seed gives another (equally good) grouping.

Unknown profession or organisation. Profession and organisation are compared after trimming and case-folding;
`None` or blank means "unknown". Unknown never counts as a boundary crossed (we cannot claim a nurse met "someone
from elsewhere" if we do not know where they are from), and it never counts as "the same" either: nothing is
forced apart or together because of it. So a pair scores a crossed profession only when both professions are
known and different, and likewise for organisation.

How it is computed, and what is guaranteed
------------------------------------------
* Up to 16 people (`EXACT_LIMIT`): an exact search (dynamic programming over the subsets still to be placed,
  well under a second) returns a grouping that is optimal for the four criteria above. In
  particular, **no repeat meeting happens whenever a grouping without repeats exists**, and when every pair has
  met before, the repeats chosen are those that met longest ago.
* Larger communities are matched in four steps:

  1. *Construction.* People whose profession and organisation are both known are grouped into blocks by their
     more-clustered attribute and person `i` is paired with person `i + k/2`. This "split in halves" is the
     classic construction for matching across classes: a block no longer than half never holds both ends of a
     pair, so everyone is paired across that attribute whenever no class holds more than half of them, and
     otherwise exactly `k - largest class` pairs cross, the most possible. The blocks come in random order, and
     then random exchanges of partners that keep both pairs ideal vary who meets whom from round to round. The
     others (something unknown) are paired the same way among themselves, joined by the one left over from the
     first set when it is odd.
  2. *Repeat repair.* For every pair whose two people have met, all other pairs are searched for an exchange of
     partners that gives two pairs who have never met; the best such exchange is made. Each exchange removes at
     least one repeat, so this ends. **Guarantee:** if nobody has met more than `h` of the people in this round
     and there are more than `h` pairs (`n // 2 > h`), the result has no repeat meeting. (For a repeated pair
     `a, b`, a pair `c, d` blocks both exchanges only if it holds at least two of the at most `2(h - 1)`
     meetings `a` and `b` had with others, so at most `h - 1` of the other `n // 2 - 1` pairs block; the trio's
     third person likewise finds a pair they have met neither of among more than `h` pairs.)
  3. *Improvement.* Every pair that is not yet ideal (unrepeated and cross-boundary) tries exchanging partners
     with other pairs, keeping the best exchange only if it improves the four criteria in order, so it can never
     bring a repeat back. Up to `FULL_SCAN_LIMIT` pairs, every other pair is tried and passes repeat until one
     changes nothing, so the result is a local optimum: no exchange of partners between two pairs improves it
     (before the trio is formed).
     Above that, each pair tries `PROBES` others from a random point of a random order (best effort).
  4. *Trio.* When the count is odd, the person left over joins the pair where the trio scores best.

  The cross-boundary count is best effort above `EXACT_LIMIT`. The benchmark (`python -m bench matching`)
  compares it with `upper_bound_cross_both` on a realistic 10,000-member community (12 professions, 30 trusts,
  some profiles incomplete) after a year of weekly rounds: it reaches over 99% of that bound with no repeat
  meeting, in well under the 2 s target per round in pure Python, where random (Donut-like) pairing reaches
  about 60% and repeats some meetings.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

EXACT_LIMIT = 16
"""Communities up to this size are matched by exact search."""

FULL_SCAN_LIMIT = 400
"""Up to this many groups, the improvement step tries every other group (a true local optimum)."""

PROBES = 64
"""Above `FULL_SCAN_LIMIT` groups, how many random other groups each non-ideal group tries."""


@dataclass(frozen=True)
class Candidate:
    """A member taking part in a round; `None` (or blank) profession or organisation means unknown."""

    member_id: int
    profession: str | None = None
    organisation: str | None = None


History = Mapping[frozenset[int], int]
"""Who has met: a pair of member ids -> the round number they last met in (higher = more recent)."""


@dataclass(frozen=True)
class Match:
    """The outcome of one round: groups of two (and one trio when the count is odd), and anyone left alone."""

    groups: tuple[tuple[int, ...], ...]
    unpaired: tuple[int, ...] = ()


class PairScore(NamedTuple):
    """How good it is for two people to meet; tuples compare in priority order, so higher is better."""

    unrepeated: bool
    crosses_both: bool
    crosses_either: bool
    rounds_since: int
    """Rounds since they last met; 0 when they never met (being unrepeated already ranks first)."""


@dataclass(frozen=True)
class RoundFigures:
    """What a round achieved. Shares are of groups (a trio counts when every two people in it qualify)."""

    groups: int
    meetings: int
    unpaired: int
    cross_profession_share: float
    cross_organisation_share: float
    cross_both_share: float
    cross_both_groups: int
    repeat_meetings: int
    distinct_profession_pairs: int
    """How many different (profession, other profession) combinations met, e.g. nurse–pharmacist."""


def normalise(value: str | None) -> str | None:
    """The comparable form of a profession or organisation: trimmed and case-folded; blank means unknown."""
    if value is None:
        return None
    cleaned = " ".join(value.split()).casefold()
    return cleaned or None


def pair_score(a: Candidate, b: Candidate, *, last_met: int | None, current_round: int) -> PairScore:
    """Score two people meeting: unrepeated first, then both boundaries crossed, then either, then time apart."""
    pa, pb = normalise(a.profession), normalise(b.profession)
    oa, ob = normalise(a.organisation), normalise(b.organisation)
    cross_profession = pa is not None and pb is not None and pa != pb
    cross_organisation = oa is not None and ob is not None and oa != ob
    return PairScore(
        unrepeated=last_met is None,
        crosses_both=cross_profession and cross_organisation,
        crosses_either=cross_profession or cross_organisation,
        rounds_since=0 if last_met is None else max(0, current_round - last_met),
    )


def match(candidates: Sequence[Candidate], history: History, *, seed: int, current_round: int) -> Match:
    """Group the candidates for one round (see the module docstring for the rules and guarantees)."""
    ids = [c.member_id for c in candidates]
    if len(set(ids)) != len(ids):
        raise ValueError("each member may take part only once per round")
    if len(candidates) <= 1:
        return Match(groups=(), unpaired=tuple(ids))
    scorer = _Scorer(candidates, history, current_round=current_round)
    rng = random.Random(seed)
    order = sorted(ids)
    rng.shuffle(order)
    groups = _exact(order, scorer) if len(order) <= EXACT_LIMIT else _heuristic(order, scorer, rng)
    return Match(groups=tuple(sorted(tuple(sorted(g)) for g in groups)), unpaired=())


def figures(result: Match, candidates: Sequence[Candidate], history: History) -> RoundFigures:
    """Measure a round: group count, boundary-crossing shares, repeat meetings, profession combinations."""
    by_id = {c.member_id: (normalise(c.profession), normalise(c.organisation)) for c in candidates}
    groups = len(result.groups)
    meetings = repeats = cross_p = cross_o = cross_b = 0
    combos: set[tuple[str, str]] = set()
    for group in result.groups:
        all_p = all_o = True
        for a, b in _pairs_of(group):
            meetings += 1
            if frozenset((a, b)) in history:
                repeats += 1
            (pa, oa), (pb, ob) = by_id[a], by_id[b]
            differ_p = pa is not None and pb is not None and pa != pb
            differ_o = oa is not None and ob is not None and oa != ob
            all_p &= differ_p
            all_o &= differ_o
            if differ_p and pa is not None and pb is not None:
                combos.add((min(pa, pb), max(pa, pb)))
        cross_p += all_p
        cross_o += all_o
        cross_b += all_p and all_o
    return RoundFigures(
        groups=groups,
        meetings=meetings,
        unpaired=len(result.unpaired),
        cross_profession_share=cross_p / groups if groups else 0.0,
        cross_organisation_share=cross_o / groups if groups else 0.0,
        cross_both_share=cross_b / groups if groups else 0.0,
        cross_both_groups=cross_b,
        repeat_meetings=repeats,
        distinct_profession_pairs=len(combos),
    )


def upper_bound_cross_both(candidates: Sequence[Candidate]) -> int:
    """An upper bound on how many groups of a round can cross both boundaries.

    Only the `k` people with both attributes known can be in such a group, and each such group contains a pair
    of them differing in both, with groups disjoint, so the bound is the smallest of:
    `k // 2`; `k - (largest profession)` and `k - (largest organisation)` (everyone in one class needs a partner
    outside it); and, for every (profession, organisation) cell, `U + (R - c) // 2`, where `c` people share the
    cell, `R` people share its profession or its organisation, and `U = k - R` share neither (a person in the cell
    can only meet one of the `U`; every other pair either uses one of the `U` or two of the `R - c`). Each term is
    an instance of the Tutte–Berge formula, so the bound is valid; it is not always the exact maximum.
    """
    cells: dict[tuple[str, str], int] = {}
    rows: dict[str, int] = {}
    cols: dict[str, int] = {}
    for c in candidates:
        p, o = normalise(c.profession), normalise(c.organisation)
        if p is None or o is None:
            continue
        cells[p, o] = cells.get((p, o), 0) + 1
        rows[p] = rows.get(p, 0) + 1
        cols[o] = cols.get(o, 0) + 1
    k = sum(cells.values())
    bound = k // 2
    if rows:
        bound = min(bound, k - max(rows.values()), k - max(cols.values()))
    for (p, o), count in cells.items():
        shares_one = rows[p] + cols[o] - count
        bound = min(bound, (k - shares_one) + (shares_one - count) // 2)
    return bound


# --- internals ---------------------------------------------------------------------------------------------


def _pairs_of(group: Sequence[int]) -> Iterable[tuple[int, int]]:
    for i, a in enumerate(group):
        for b in group[i + 1 :]:
            yield a, b


class _Scorer:
    """Integer keys whose sums compare like the four criteria in order (weights B³, B², B, 1)."""

    def __init__(self, candidates: Sequence[Candidate], history: History, *, current_round: int) -> None:
        # Professions and organisations get separate code spaces, so a profession never equals an organisation.
        codes: dict[tuple[str, str], int] = {}

        def code(kind: str, value: str | None) -> int:
            norm = normalise(value)
            return 0 if norm is None else codes.setdefault((kind, norm), len(codes) + 1)

        ordered = sorted(candidates, key=lambda c: c.member_id)
        self.prof = {c.member_id: code("p", c.profession) for c in ordered}
        self.org = {c.member_id: code("o", c.organisation) for c in ordered}
        self.history = history
        self.current_round = current_round
        oldest = min(current_round, min(history.values(), default=current_round))
        n = len(ordered)
        base = (n + 3) * (current_round - oldest + 1) + 1
        self.w1, self.w2, self.w3 = base, base * base, base * base * base
        self.ideal = self.w3 + self.w2 + self.w1
        self.caps = self._caps()

    def known_both(self, m: int) -> bool:
        return self.prof[m] != 0 and self.org[m] != 0

    def cap(self, m: int) -> int:
        """The best key any pair with this person can have, given who else is in the round."""
        return self.caps[m]

    def _caps(self) -> dict[int, int]:
        # Someone can cross a boundary only if somebody else is known to be on the other side of it.
        prof_n: dict[int, int] = {}
        org_n: dict[int, int] = {}
        rows: dict[int, int] = {}
        cols: dict[int, int] = {}
        cells: dict[tuple[int, int], int] = {}
        for m, p in self.prof.items():
            o = self.org[m]
            prof_n[p] = prof_n.get(p, 0) + 1
            org_n[o] = org_n.get(o, 0) + 1
            if p and o:
                rows[p] = rows.get(p, 0) + 1
                cols[o] = cols.get(o, 0) + 1
                cells[p, o] = cells.get((p, o), 0) + 1
        known_p = len(self.prof) - prof_n.get(0, 0)
        known_o = len(self.org) - org_n.get(0, 0)
        known_both = sum(cells.values())
        caps: dict[int, int] = {}
        for m, p in self.prof.items():
            o = self.org[m]
            both = bool(p and o and known_both - rows[p] - cols[o] + cells[p, o] > 0)
            either = bool((p and known_p > prof_n[p]) or (o and known_o > org_n[o]))
            caps[m] = self.w3 + (self.w2 if both else 0) + (self.w1 if either else 0)
        return caps

    def pair(self, a: int, b: int) -> int:
        pa, pb, oa, ob = self.prof[a], self.prof[b], self.org[a], self.org[b]
        cp = pa != 0 and pb != 0 and pa != pb
        co = oa != 0 and ob != 0 and oa != ob
        key = (self.w2 if cp and co else 0) + (self.w1 if cp or co else 0)
        last = self.history.get(frozenset((a, b)))
        if last is None:
            return key + self.w3
        return key + max(0, self.current_round - last)

    def group(self, group: Sequence[int]) -> int:
        if len(group) == 2:
            return self.pair(group[0], group[1])
        unrepeated = age = 0
        both = either = True
        for a, b in _pairs_of(group):
            pa, pb, oa, ob = self.prof[a], self.prof[b], self.org[a], self.org[b]
            cp = pa != 0 and pb != 0 and pa != pb
            co = oa != 0 and ob != 0 and oa != ob
            both &= cp and co
            either &= cp or co
            last = self.history.get(frozenset((a, b)))
            if last is None:
                unrepeated += 1
            else:
                age += max(0, self.current_round - last)
        return unrepeated * self.w3 + both * self.w2 + either * self.w1 + age


def _exact(order: list[int], scorer: _Scorer) -> list[tuple[int, ...]]:
    """Optimal grouping by dynamic programming over bitmasks; the first best in `order` wins ties."""
    n = len(order)
    pair_key = [[scorer.pair(order[i], order[j]) if i != j else 0 for j in range(n)] for i in range(n)]
    memo: dict[int, tuple[int, tuple[int, ...]]] = {0: (0, ())}

    def best(mask: int) -> tuple[int, tuple[int, ...]]:
        if mask in memo:
            return memo[mask]
        i = (mask & -mask).bit_length() - 1
        rest = mask & ~(1 << i)
        others = [j for j in range(n) if rest >> j & 1]
        top: tuple[int, tuple[int, ...]] = (-1, ())
        # An odd count still owes the one trio: the lowest person either joins it or pairs and leaves it to
        # the others (which needs at least three of them). An even count is pairs only.
        if len(others) % 2 == 1 or len(others) >= 4:
            for j in others:
                value = pair_key[i][j] + best(rest & ~(1 << j))[0]
                if value > top[0]:
                    top = (value, (i, j))
        if len(others) % 2 == 0:
            for x, j in enumerate(others):
                for k in others[x + 1 :]:
                    value = scorer.group((order[i], order[j], order[k]))
                    value += best(rest & ~(1 << j) & ~(1 << k))[0]
                    if value > top[0]:
                        top = (value, (i, j, k))
        memo[mask] = top
        return top

    groups: list[tuple[int, ...]] = []
    mask = (1 << n) - 1
    while mask:
        chosen = best(mask)[1]
        groups.append(tuple(order[i] for i in chosen))
        for i in chosen:
            mask &= ~(1 << i)
    return groups


def _split_in_halves(
    people: list[int], classes: Mapping[int, int], rng: random.Random
) -> tuple[list[list[int]], list[int]]:
    """Pair across classes: classes in contiguous blocks, person i meets person i + half; odd → one is left.

    A block no longer than the half never holds both i and i + half, so everyone is paired across classes
    whenever no class exceeds half; a longer block (wherever it sits) leaves exactly `size - half` pairs inside
    it, the fewest possible. So the order of the blocks is free, and is random, to vary who meets whom.
    """
    sizes: dict[int, int] = {}
    for m in people:
        sizes[classes[m]] = sizes.get(classes[m], 0) + 1
    left: list[int] = []
    if len(people) % 2:
        largest = max(sizes, key=lambda c: (sizes[c], -c))
        left = [next(m for m in people if classes[m] == largest)]
    block_order = sorted(sizes)
    rng.shuffle(block_order)
    rank = {c: r for r, c in enumerate(block_order)}
    ordered = sorted((m for m in people if not left or m != left[0]), key=lambda m: rank[classes[m]])
    half = len(ordered) // 2
    return [[ordered[i], ordered[i + half]] for i in range(half)], left


def _mix(pairs: list[list[int]], keys: list[int], scorer: _Scorer, rng: random.Random) -> None:
    """Swap partners between ideal pairs when both stay ideal: the same quality, more varied combinations."""
    if len(pairs) < 2:
        return
    count = len(pairs)
    for _ in range(2 * count):
        i, j = int(rng.random() * count), int(rng.random() * count)
        if i == j or keys[i] < scorer.ideal or keys[j] < scorer.ideal:
            continue
        (a, b), (c, d) = pairs[i], pairs[j]
        if scorer.pair(a, d) >= scorer.ideal and scorer.pair(c, b) >= scorer.ideal:
            pairs[i], pairs[j] = [a, d], [c, b]


def _clustering(people: list[int], classes: Mapping[int, int]) -> int:
    """Sum of squared class sizes: how likely two random people share the class."""
    sizes: dict[int, int] = {}
    for m in people:
        sizes[classes[m]] = sizes.get(classes[m], 0) + 1
    return sum(s * s for s in sizes.values())


def _heuristic(order: list[int], scorer: _Scorer, rng: random.Random) -> list[tuple[int, ...]]:
    known = [m for m in order if scorer.known_both(m)]
    rest = [m for m in order if not scorer.known_both(m)]
    primary = scorer.prof if _clustering(known, scorer.prof) >= _clustering(known, scorer.org) else scorer.org
    pairs, left = _split_in_halves(known, primary, rng)
    rest = left + rest
    # Something is unknown for these: class by profession when known, else by organisation, else "unknown".
    fallback = {m: scorer.prof[m] or -scorer.org[m] for m in rest}
    more, left = _split_in_halves(rest, fallback, rng)
    pairs += more

    keys = [scorer.pair(a, b) for a, b in pairs]
    _mix(pairs, keys, scorer, rng)
    repeated = [i for i, k in enumerate(keys) if k < scorer.w3]
    _improve(pairs, keys, repeated, scorer, rng, goal=scorer.w3, scan_all=True)
    not_ideal = [i for i, k in enumerate(keys) if k < scorer.ideal]
    _improve(pairs, keys, not_ideal, scorer, rng, goal=scorer.ideal, scan_all=len(pairs) <= FULL_SCAN_LIMIT)

    groups: list[tuple[int, ...]] = [tuple(p) for p in pairs]
    if left:
        (extra,) = left
        best_index, best_gain = 0, None
        for i, (a, b) in enumerate(pairs):
            gain = scorer.group((a, b, extra)) - keys[i]
            if best_gain is None or gain > best_gain:
                best_index, best_gain = i, gain
        groups[best_index] = (*pairs[best_index], extra)
    return groups


def _improve(
    pairs: list[list[int]],
    keys: list[int],
    worklist: list[int],
    scorer: _Scorer,
    rng: random.Random,
    *,
    goal: int,
    scan_all: bool,
) -> None:
    """Exchange partners while that strictly improves the criteria, for pairs whose key is below `goal`.

    Works on `pairs` and `keys` in place. Every accepted exchange raises the (bounded, integer) total, so it ends.
    """
    count = len(pairs)
    # One random order, entered at a random point per pair: as fair as a fresh shuffle, far cheaper.
    everyone = list(range(count))
    rng.shuffle(everyone)
    everyone += everyone
    while True:
        if not _improve_pass(pairs, keys, worklist, scorer, rng, everyone, goal=goal, scan_all=scan_all):
            return
        if not scan_all:
            return
        # Something changed: look again at every pair below the goal, until a full pass changes nothing (which
        # makes the result a local optimum).
        worklist = [i for i in range(count) if keys[i] < goal]


def _improve_pass(
    pairs: list[list[int]],
    keys: list[int],
    worklist: list[int],
    scorer: _Scorer,
    rng: random.Random,
    everyone: list[int],
    *,
    goal: int,
    scan_all: bool,
) -> bool:
    """One pass of `_improve` over the worklist (and the pairs it changes); whether anything changed."""
    count = len(pairs)
    changed = False
    queued = set(worklist)
    pending = list(reversed(worklist))
    while pending:
        i = pending.pop()
        queued.discard(i)
        a, b = pairs[i]
        cap_a, cap_b = scorer.cap(a), scorer.cap(b)
        if keys[i] >= goal or keys[i] >= max(cap_a, cap_b):
            # Nothing to gain from this side: any exchange that helps is found from the other pair's side.
            continue
        start = int(rng.random() * count)
        partners = everyone[start : start + (count if scan_all else min(PROBES, count))]
        best_gain, best_j, best_swap = 0, -1, (0, 0, 0, 0)
        for j in partners:
            if j == i:
                continue
            c, d = pairs[j]
            now = keys[i] + keys[j]
            k1, k2 = scorer.pair(a, c), scorer.pair(b, d)
            if k1 + k2 - now > best_gain:
                best_gain, best_j, best_swap = k1 + k2 - now, j, (c, d, k1, k2)
            k1, k2 = scorer.pair(a, d), scorer.pair(b, c)
            if k1 + k2 - now > best_gain:
                best_gain, best_j, best_swap = k1 + k2 - now, j, (d, c, k1, k2)
            if best_j >= 0 and best_swap[2] >= cap_a and best_swap[3] >= cap_b:
                break  # both new pairs are as good as these two people can get
        if best_j < 0:
            continue
        x, y, k1, k2 = best_swap
        pairs[i], pairs[best_j] = [a, x], [b, y]
        keys[i], keys[best_j] = k1, k2
        changed = True
        for index in (i, best_j):
            if keys[index] < goal and index not in queued:
                queued.add(index)
                pending.append(index)
    return changed
