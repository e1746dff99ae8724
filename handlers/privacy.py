"""The PII guard (no heavy NLP) and the gentle incident-language pointer (docs/architecture.md §7)."""

from __future__ import annotations

import bisect
import dataclasses
import functools
import logging
import re
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

from handlers.errors import DomainError

log = logging.getLogger(__name__)

PiiKind = Literal[
    "nhs_number",
    "chi_number",
    "postcode",
    "ni_number",
    "phone_number",
    "email",
    "date_of_birth",
    "hospital_number",
]

_DESCRIPTIONS: dict[PiiKind, str] = {
    "nhs_number": "an NHS number",
    "chi_number": "a CHI number",
    "postcode": "a postcode",
    "ni_number": "a National Insurance number",
    "phone_number": "a phone number",
    "email": "an e-mail address",
    "date_of_birth": "a date of birth",
    "hospital_number": "a hospital number",
}


@dataclass(frozen=True)
class PiiHit:
    """Where something patient-identifiable was found; deliberately holds no copy of the value."""

    kind: PiiKind
    start: int
    end: int

    def describe(self) -> str:
        """The kind in plain words with its article, e.g. "an NHS number"."""
        return _DESCRIPTIONS[self.kind]


@dataclass(frozen=True)
class FieldHit:
    """A kind of PII found in one form field; `label` is the human name shown to the person (not compared)."""

    field: str
    kind: PiiKind
    label: str = dataclasses.field(default="", compare=False)

    @property
    def shown_as(self) -> str:
        """The name to show the person: the label when there is one, else the field key."""
        return self.label or self.field


class PiiFound(DomainError):
    """Saving was blocked because one or more fields look patient-identifiable; never echoes the value."""

    def __init__(self, hits: Sequence[FieldHit]) -> None:
        self.hits = list(hits)
        super().__init__(_blocked_message(self.hits))


# ---------------------------------------------------------------------------------------------------------------
# Folding. People paste numbers from PDFs, spreadsheets, phones and web pages: the same NHS number arrives with
# no-break spaces, en dashes, fullwidth or Arabic-Indic digits, or zero-width characters inside. Every pattern below
# runs on a folded copy of the text (NFKC, invisibles removed, dash-, space-, slash- and dot-likes made ASCII,
# whitespace runs made one space), and a map takes each hit back to offsets in the original.
# ---------------------------------------------------------------------------------------------------------------

# Dash-likes outside category Pd (which is folded as a whole): minus signs and the hyphen bullet.
_DASH_LIKE = frozenset("\u2212\u02d7\u2796\u2043")
_SLASH_LIKE = frozenset("\u2044\u2215\u29f8")
# Middle dots, used between digit groups the way other people use a full stop.
_DOT_LIKE = frozenset("\u00b7\u2027\u2219\u22c5\u30fb\uff65")
# Letters that render as nothing (Hangul fillers), so they hide inside a number like a zero-width space does.
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")
# Format (zero-width, bidi, soft hyphen, BOM), control, and combining/enclosing marks (keycaps, strike-through).
_DROPPED_CATEGORIES = frozenset({"Cf", "Cc", "Mn", "Me"})

# What needs folding: any character that is not printable ASCII, or two spaces. Text with neither is used as it is,
# with no copy and no map; otherwise each whole block of spaces and such characters is folded together.
_NOT_PRINTABLE_ASCII = re.compile(r"[^\x20-\x7e]")
_BLOCK_REST = re.compile(r"[^\x21-\x7e]*")
_ASCII_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _fold_rule(ch: str) -> str | None:
    """The ASCII stand-in for a separator, invisible or digit, or None when NFKC decides."""
    if ch.isspace():
        return " "
    category = unicodedata.category(ch)
    if category in _DROPPED_CATEGORIES or ch in _BLANK_LETTERS:
        return ""
    if category == "Pd" or ch in _DASH_LIKE:
        return "-"
    if category == "Nd":
        return str(unicodedata.decimal(ch))  # NFKC keeps Arabic-Indic, Devanagari, ... digits as they are
    if ch in _SLASH_LIKE:
        return "/"
    if ch in _DOT_LIKE:
        return "."
    return None


@functools.lru_cache(maxsize=4096)
def _fold_char(ch: str) -> str:
    """One character as the patterns should see it (possibly several characters, possibly none)."""
    rule = _fold_rule(ch)
    if rule is not None:
        return rule
    nfkc = unicodedata.normalize("NFKC", ch)
    if nfkc == ch:
        return ch
    # NFKC can yield a dash, space or combining mark of its own (U+2011 -> U+2010, U+00A8 -> space + mark).
    return "".join(c if (r := _fold_rule(c)) is None else r for c in nfkc)


class _Folded(NamedTuple):
    """Folded text and the map back: folded runs are listed; text between runs is the original, shifted."""

    text: str
    run_starts: list[int]  # where each folded run begins in `text`
    run_ends: list[int]
    shifts: list[int]  # original offset minus folded offset, for the verbatim text after each run
    bases: list[int]  # where each run's characters begin in `char_starts` / `char_ends`
    char_starts: list[int]  # for each character a run produced: the original character(s) it came from
    char_ends: list[int]

    def original_start(self, at: int) -> int:
        """The original offset where the folded character at `at` begins."""
        k = bisect.bisect_right(self.run_starts, at) - 1
        if k >= 0 and at < self.run_ends[k]:
            return self.char_starts[self.bases[k] + at - self.run_starts[k]]
        return at + (self.shifts[k] if k >= 0 else 0)

    def original_end(self, end: int) -> int:
        """The original offset just past the folded character before `end`."""
        last = end - 1
        k = bisect.bisect_right(self.run_starts, last) - 1
        if k >= 0 and last < self.run_ends[k]:
            return self.char_ends[self.bases[k] + last - self.run_starts[k]]
        return end + (self.shifts[k] if k >= 0 else 0)


def _odd_blocks(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of each block of spaces and odd characters that holds something to fold, left to right."""
    # Two C-speed searches (one character class, one substring) rather than one regex with an alternation, which
    # would try a match at every position; each keeps its place so no stretch of text is searched twice.
    at = 0
    odd_at = -1  # where the next odd character is (len(text) when there is none), once searched
    while True:
        if odd_at < at:
            odd = _NOT_PRINTABLE_ASCII.search(text, at)
            odd_at = odd.start() if odd is not None else len(text)
        double = text.find("  ", at, odd_at)
        first = double if double != -1 else odd_at
        if first == len(text):
            return
        # At most one space comes before (two would have been `double`): it joins, to merge with a folded space.
        start = first - 1 if first > at and text[first - 1] == " " else first
        rest = _BLOCK_REST.match(text, first)
        end = rest.end() if rest is not None else first + 1
        yield start, end
        at = end


def _fold(text: str) -> _Folded:
    """`text` folded for matching, with the map from folded offsets back to `text`'s offsets."""
    folded = _Folded(text, [], [], [], [], [], [])
    if text.isascii() and "  " not in text and _ASCII_CONTROL.search(text) is None:
        return folded  # the common case, checked at C speed: plain one-line ASCII prose needs no folding
    pieces: list[str] = []
    length = 0
    last = 0
    for start, end in _odd_blocks(text):
        pieces.append(text[last:start])
        length += start - last
        folded.run_starts.append(length)
        folded.bases.append(len(folded.char_starts))
        run: list[str] = []
        for i in range(start, end):
            for c in _fold_char(text[i]):
                if c == " " and run and run[-1] == " ":
                    folded.char_ends[-1] = i + 1  # a run of spaces (and invisibles between) is one separator
                    continue
                run.append(c)
                folded.char_starts.append(i)
                folded.char_ends.append(i + 1)
        pieces.extend(run)
        length += len(run)
        folded.run_ends.append(length)
        folded.shifts.append(end - length)
        last = end
    pieces.append(text[last:])
    return folded._replace(text="".join(pieces))


# ---------------------------------------------------------------------------------------------------------------
# Patterns. All run on folded text (see above), are compiled once, ASCII-only (so `\d` is 0-9) and written so every
# repetition is bounded or anchored at a boundary: each scan is linear in the length of the text.
# ---------------------------------------------------------------------------------------------------------------

# A number glued to letters, other digits, a decimal point or a slash is part of something else (a dose, a ratio, a
# ref). An underscore is not glue: file names like "referral_9434765919.pdf" carry real numbers.
_NOT_AFTER_NUMBER = r"(?<![^\W_])(?<![+@])(?<!\d[.,:/\-_])"
_NOT_BEFORE_NUMBER = r"(?![^\W_]|@)(?![.,:/\-_]\d)"

_TEN_DIGITS = re.compile(
    _NOT_AFTER_NUMBER
    # 3-3-4 with one separator style throughout (" - " is what word processors make of a typed "-"), or CHI's 6-4.
    + r"(?:\d{3}(?P<sep>[ \-._/]?|\ -\ )\d{3}(?P=sep)\d{4}|\d{6}[ \-]\d{4})"
    + _NOT_BEFORE_NUMBER,
    re.ASCII,
)
# The keyword that makes a 10-digit number an NHS/CHI number whatever its check digit.
_ID_KEYWORD_BEFORE = re.compile(
    r"\b(?P<kw>NHS|CHI)(?:[\s\-]{0,3}(?:number|no\b\.?|num\b\.?|nbr\b|#))?\s{0,3}[:#=\-]?\s{0,3}(?:(?:is|was)\s{1,3})?$",
    re.IGNORECASE | re.ASCII,
)

# Between digit groups: a space, a hyphen, a dot ("0161.496.0000", checked below) or a spaced hyphen.
_PHONE = re.compile(
    _NOT_AFTER_NUMBER
    + r"""(?:
        (?P<intl>(?:\+|00)\ ?44(?:\ -\ |[\ \-.])?(?:\(0\)[\ \-.]?)?[1-9](?:(?:\ -\ |[\ \-.])?\d){8,9})
      | \(0\d{2,5}\)[\ \-.]?\d{3,4}(?:\ -\ |[\ \-.])?\d{3,4}
      | 0[1-9](?:(?:\ -\ |[\ \-.])?\d){8,9}
    )"""
    + _NOT_BEFORE_NUMBER,
    re.VERBOSE | re.ASCII,
)

_DATE_FIRST = re.compile(r"0[1-9][ \-.](?:0[1-9]|1[0-2])[ \-.]", re.ASCII)

_EMAIL = re.compile(
    r"(?<![\w.+\-])[\w.+\-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9\-]{0,62})(?:\.[A-Za-z0-9\-]{1,63}){1,8}(?![\w@])",
    re.ASCII,
)

# Prefix rules from HMRC: first letter not D F I Q U V; second not D F I O Q U V; BG GB KN NK NT TN ZZ never issued.
_NI_PREFIX = r"(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
_NI = re.compile(
    rf"(?<!\w)(?:{_NI_PREFIX}[\ \-]?\d{{2}}[\ \-]?\d{{2}}[\ \-]?\d{{2}}[\ \-]?[A-D]"
    rf"|{_NI_PREFIX}(?P<sep>[\ \-])\d{{2}}(?P=sep)\d{{2}}(?P=sep)\d{{2}})(?!\w)",
    re.IGNORECASE | re.ASCII | re.VERBOSE,
)

# Royal Mail's outward-code letter rules; the inward code never uses C I K M O V (which also keeps "2am", "5mg" out).
_POSTCODE = re.compile(
    r"""(?<![\w])
    (?P<out>
        GIR(?=\ ?0AA)
      | [A-PR-UWYZ](?:[0-9][0-9]?|[A-HK-Y][0-9][0-9]?|[0-9][A-HJKPSTUW]|[A-HK-Y][0-9][ABEHMNPRV-Y])
    )
    \ ?
    (?P<in>[0-9][ABD-HJLNP-UW-Z]{2})
    (?![\w])""",
    re.IGNORECASE | re.ASCII | re.VERBOSE,
)
# Lower-case ordinals and hours ("b1 1st", "t2 2nd", "x1 1hr") are prose, not postcodes.
_LOWER_INWARD_PROSE = frozenset({"st", "nd", "rd", "th", "hr"})

_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_DATE = (
    r"(?:\d{1,2}[/.\-]\d{1,2}[/.\-](?:\d{4}|\d{2})"
    r"|\d{4}-\d{1,2}-\d{1,2}"
    rf"|\d{{1,2}}(?:st|nd|rd|th)?(?:\s{{1,3}}of)?\s{{1,3}}{_MONTH},?\s{{1,3}}\d{{2,4}}"
    rf"|{_MONTH}\s{{1,3}}\d{{1,2}}(?:st|nd|rd|th)?,?\s{{1,3}}\d{{4}}"
    rf"|{_MONTH},?\s{{1,3}}\d{{4}})"
)
_DOB = re.compile(
    r"\b(?:d\.?\s?o\.?\s?b\b\.?|date\s{1,3}of\s{1,3}birth|birth\s?date|born(?:\s{1,3}on)?)"
    r"[\s:=\-,()]{0,6}(?:(?:is|was|on|in|of)\s{1,3}){0,2}(?:the\s{1,3})?"
    rf"(?P<value>{_DATE})(?!\w)",
    re.IGNORECASE | re.ASCII,
)

_HOSPITAL = re.compile(
    r"\b(?:hosp(?:ital|\.)?\s{0,3}(?:number|no\b\.?|num\b\.?|nbr\b|#)"
    r"|MRN\b|medical\s{1,3}record\s{1,3}(?:number|no\b\.?)"
    r"|unit\s{1,3}(?:number|no\b\.?)|case\s?notes?\s{1,3}(?:number|no\b\.?)|patient\s{1,3}(?:id|number)\b)"
    r"[\s:=#\-.]{0,5}(?:(?:is|was)\s{1,3})?"
    r"(?P<value>(?:[A-Z]{1,4}[ \-]?)?\d{5,12}[A-Z]?)(?!\w)",
    re.IGNORECASE | re.ASCII,
)

# Lower number wins when two candidates overlap: the more specific reading of the same characters.
_PRIORITY: dict[str, int] = {
    "email": 0,
    "phone_intl": 1,
    "ten_digit": 2,
    "ni_number": 3,
    "phone_number": 4,
    "date_of_birth": 5,
    "hospital_number": 6,
    "postcode": 7,
}

_ASCII_DIGIT = re.compile(r"[0-9]")

_Candidate = tuple[int, int, int, PiiKind]  # priority, start, end, kind


def _mod11_check_digit(nine: str) -> int | None:
    """The Modulus-11 check digit for nine digits, or None when the check value is 10 (never issued)."""
    total = sum(int(d) * w for d, w in zip(nine, range(10, 1, -1), strict=True))
    check = 11 - total % 11
    if check == 11:
        return 0
    return None if check == 10 else check


def _is_chi_date(digits: str) -> bool:
    """Whether the first six digits are a real DDMMYY date (29 February allowed when some century makes it so)."""
    day, month, year = int(digits[0:2]), int(digits[2:4]), int(digits[4:6])
    if not 1 <= month <= 12 or day < 1:
        return False
    days = (31, 29 if year % 4 == 0 else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)[month - 1]
    return day <= days


def _ten_digit_candidates(text: str) -> Iterator[_Candidate]:
    for m in _TEN_DIGITS.finditer(text):
        sep = m.group("sep")
        digits = re.sub(r"[^0-9]", "", m.group())
        keyword = _ID_KEYWORD_BEFORE.search(text, max(0, m.start() - 30), m.start())
        kind: PiiKind | None = None
        if keyword is not None:
            kind = "chi_number" if keyword.group("kw").upper() == "CHI" else "nhs_number"
        elif sep == "/":
            pass  # "123/456/7890" is a reference or a fraction far more often than a number typed with slashes
        elif _mod11_check_digit(digits[:9]) == int(digits[9]):
            # Same checksum for both; a real DDMMYY start (only CHI numbers begin 01-31) makes it a CHI number.
            kind = "chi_number" if _is_chi_date(digits) else "nhs_number"
        if kind is not None:
            yield (_PRIORITY["ten_digit"], m.start(), m.end(), kind)


def _phone_candidates(text: str) -> Iterator[_Candidate]:
    for m in _PHONE.finditer(text):
        if "." in m.group() and ("-" in m.group() or " " in m.group()):
            continue  # dots only as the one separator style: "01.02.2024 14:00" is a date and a time
        if _DATE_FIRST.match(m.group()):
            continue  # nobody groups a phone number 0d-dd-…: "on 01-02-2024 14 patients" is a date and a count
        digits = "".join(ch for ch in m.group() if ch.isdigit())
        intl = m.group("intl") is not None
        # +44 / 0044 and an optional "(0)" become the national trunk 0.
        national = "0" + digits[digits.index("44") + 2 :].removeprefix("0") if intl else digits
        # UK numbers are 10 or 11 digits with the trunk 0; 04 and 06 are not in use.
        if len(national) in (10, 11) and national[0] == "0" and national[1] in "1235789":
            yield (_PRIORITY["phone_intl" if intl else "phone_number"], m.start(), m.end(), "phone_number")


def _postcode_candidates(text: str) -> Iterator[_Candidate]:
    for m in _POSTCODE.finditer(text):
        letters = m.group("out") + m.group("in")
        if not (letters.isupper() or letters.islower()):
            continue  # "Ward B1 1st": people type postcodes in one case
        if letters.islower() and m.group("in")[1:] in _LOWER_INWARD_PROSE:
            continue
        yield (_PRIORITY["postcode"], m.start(), m.end(), "postcode")


def _simple_candidates(
    text: str, pattern: re.Pattern[str], kind: PiiKind, group: int | str = 0
) -> Iterator[_Candidate]:
    for m in pattern.finditer(text):
        yield (_PRIORITY[kind], m.start(group), m.end(group), kind)


def _candidates(text: str) -> Iterator[_Candidate]:
    has_digit = _ASCII_DIGIT.search(text) is not None  # folded text: every digit that matters is 0-9 by now
    if "@" in text:
        yield from _simple_candidates(text, _EMAIL, "email")
    if not has_digit:
        return  # every other kind needs a digit
    yield from _ten_digit_candidates(text)
    yield from _simple_candidates(text, _NI, "ni_number")
    yield from _phone_candidates(text)
    yield from _simple_candidates(text, _DOB, "date_of_birth", "value")
    yield from _simple_candidates(text, _HOSPITAL, "hospital_number", "value")
    yield from _postcode_candidates(text)


def scan(text: str) -> list[PiiHit]:
    """Every patient-identifiable span in `text`, in order, one hit per span (the most specific kind wins).

    Matching sees `text` folded (Unicode look-alike digits, dashes, spaces and invisible characters made plain), so a
    pasted or oddly typed identifier is caught; offsets are always in `text` itself.
    """
    folded = _fold(text)
    starts: list[int] = []
    ends: list[int] = []
    kinds: list[PiiKind] = []
    for _priority, start, end, kind in sorted(_candidates(folded.text)):
        i = bisect.bisect_left(starts, start)
        if (i > 0 and ends[i - 1] > start) or (i < len(starts) and starts[i] < end):
            continue
        starts.insert(i, start)
        ends.insert(i, end)
        kinds.insert(i, kind)
    return [
        PiiHit(kind=k, start=folded.original_start(s), end=folded.original_end(e))
        for k, s, e in zip(kinds, starts, ends, strict=True)
    ]


def redact(text: str) -> str:
    """`text` with each hit replaced by "[removed: <kind>]", for safe previews and logs."""
    parts: list[str] = []
    last = 0
    for hit in scan(text):
        parts.append(text[last : hit.start])
        parts.append(f"[removed: {hit.kind}]")
        last = hit.end
    parts.append(text[last:])
    return "".join(parts)


def check_fields(fields: Mapping[str, str], *, labels: Mapping[str, str] | None = None) -> list[FieldHit]:
    """One `FieldHit` per field and kind found, in field order then order of appearance."""
    found: list[FieldHit] = []
    for name, value in fields.items():
        if not value:
            continue
        seen: set[PiiKind] = set()
        for hit in scan(value):
            if hit.kind not in seen:
                seen.add(hit.kind)
                label = labels.get(name, name) if labels is not None else name
                found.append(FieldHit(field=name, kind=hit.kind, label=label))
    return found


def guard(fields: Mapping[str, str], *, labels: Mapping[str, str] | None = None) -> None:
    """Raise `PiiFound` naming the field(s) and kind(s) when any field looks patient-identifiable."""
    hits = check_fields(fields, labels=labels)
    if hits:
        log.info(
            "PII guard blocked a save: fields=%s kinds=%s",
            sorted({h.field for h in hits}),
            sorted({h.kind for h in hits}),
        )
        raise PiiFound(hits)


def _and_join(words: Sequence[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def _blocked_message(hits: Sequence[FieldHit]) -> str:
    by_field: dict[str, list[str]] = {}
    for hit in hits:
        described = _DESCRIPTIONS[hit.kind]
        kinds = by_field.setdefault(hit.shown_as, [])
        if described not in kinds:
            kinds.append(described)
    clauses = [f"the *{name}* field looks like it contains {_and_join(kinds)}" for name, kinds in by_field.items()]
    return f"I can't save this: {'; '.join(clauses)}. Please remove patient-identifiable details and try again."


# ---------------------------------------------------------------------------------------------------------------
# Incident language: never blocks, only adds a pointer to the trust's reporting route.
# ---------------------------------------------------------------------------------------------------------------

_INCIDENT = re.compile(
    r"\b(?:"
    r"(?P<psi>patient\s{1,3}safety\s{1,3}incidents?)"
    r"|(?P<si>serious\s{1,3}incidents?)"
    r"|(?P<ne>never[\s\-]{1,3}events?)"
    r"|(?P<ae>adverse\s{1,3}(?:events?|incidents?))"
    r"|(?P<nm>near[\s\-]{1,3}miss(?:es)?)"
    r"|(?P<datix>datix(?:ed|es|s)?)"
    r"|(?P<lfpse>LFPSE)"
    # "harm-free care" is an improvement measure, "harmless" is not harm: neither is incident language.
    r"|(?P<harm>harm(?:s|ed|ful|ing)?(?![\s\-]{1,3}free\b))"
    r"|(?P<inc>incidents?)"
    r")\b",
    re.IGNORECASE | re.ASCII,
)
_INCIDENT_CANONICAL = {
    "psi": "patient safety incident",
    "si": "serious incident",
    "ne": "never event",
    "ae": "adverse event",
    "nm": "near miss",
    "datix": "Datix",
    "lfpse": "LFPSE",
    "harm": "harm",
    "inc": "incident",
}


def incident_terms(text: str) -> list[str]:
    """The incident-language terms in `text`, canonical and de-duplicated in order of appearance."""
    terms: list[str] = []
    for m in _INCIDENT.finditer(_fold(text).text):  # "near\u00a0miss" and "near\u2011miss" are still a near miss
        term = _INCIDENT_CANONICAL[m.lastgroup or "inc"]
        if term not in terms:
            terms.append(term)
    return terms


def incident_pointer(text: str, *, incident_url: str | None) -> str | None:
    """A gentle sentence pointing to the trust's incident route when `text` uses incident language, else None."""
    terms = incident_terms(text)
    if not terms:
        return None
    mentioned = _and_join([f"_{t}_" for t in terms])
    # The link goes last so no punctuation sticks to it when the platform turns it into a link.
    if incident_url:
        route = f"please report it through your trust's incident route too: {incident_url}"
    else:
        route = "please report it through your organisation's usual incident reporting system too."
    return (
        f"Thank you for sharing. You mentioned {mentioned}: sharing here doesn't replace reporting, "
        f"so if it hasn't been reported yet, {route}"
    )
