"""The PII guard (no heavy NLP) and the gentle incident-language pointer for shared stories (design.md §7)."""

from __future__ import annotations

import bisect
import dataclasses
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

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
# Patterns. All are compiled once, ASCII-only (so `\d` is 0-9) and written so every repetition is bounded or
# anchored at a boundary: each scan is linear in the length of the text.
# ---------------------------------------------------------------------------------------------------------------

# A number glued to other digits, a decimal point or a slash is part of something else (a dose, a ratio, a ref).
_NOT_AFTER_NUMBER = r"(?<![\w+@])(?<!\d[.,:/\-])"
_NOT_BEFORE_NUMBER = r"(?![\w@])(?![.,:/\-]\d)"

_TEN_DIGITS = re.compile(
    _NOT_AFTER_NUMBER
    + r"(?:\d{3}(?P<sep>[ \-]?)\d{3}(?P=sep)\d{4}|\d{6}[ \-]\d{4})"  # 3-3-4 (one separator style) or CHI's 6-4
    + _NOT_BEFORE_NUMBER,
    re.ASCII,
)
# The keyword that makes a 10-digit number an NHS/CHI number whatever its check digit.
_ID_KEYWORD_BEFORE = re.compile(
    r"\b(?P<kw>NHS|CHI)(?:\s{0,3}(?:number|no\b\.?|num\b\.?|nbr\b|#))?\s{0,3}[:#=\-–]?\s{0,3}(?:(?:is|was)\s{1,3})?$",
    re.IGNORECASE | re.ASCII,
)

_PHONE = re.compile(
    _NOT_AFTER_NUMBER
    + r"""(?:
        (?P<intl>(?:\+|00)\ ?44[\ \-]?(?:\(0\)[\ \-]?)?[1-9](?:[\ \-]?\d){8,9})
      | \(0\d{2,5}\)[\ \-]?\d{3,4}[\ \-]?\d{3,4}
      | 0[1-9](?:[\ \-]?\d){8,9}
    )"""
    + _NOT_BEFORE_NUMBER,
    re.VERBOSE | re.ASCII,
)

_EMAIL = re.compile(
    r"(?<![\w.+\-])[\w.+\-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9\-]{0,62})(?:\.[A-Za-z0-9\-]{1,63}){1,8}(?![\w@])",
    re.ASCII,
)

# Prefix rules from HMRC: first letter not D F I Q U V; second not D F I O Q U V; BG GB KN NK NT TN ZZ never issued.
_NI_PREFIX = r"(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
_NI = re.compile(
    rf"(?<!\w)(?:{_NI_PREFIX}\ ?\d{{2}}\ ?\d{{2}}\ ?\d{{2}}\ ?[A-D]|{_NI_PREFIX}\ \d{{2}}\ \d{{2}}\ \d{{2}})(?!\w)",
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
    r"[\s:=\-–,()]{0,6}(?:(?:is|was|on|in|of)\s{1,3}){0,2}(?:the\s{1,3})?"
    rf"(?P<value>{_DATE})(?!\w)",
    re.IGNORECASE | re.ASCII,
)

_HOSPITAL = re.compile(
    r"\b(?:hosp(?:ital|\.)?\s{0,3}(?:number|no\b\.?|num\b\.?|nbr\b|#)"
    r"|MRN\b|medical\s{1,3}record\s{1,3}(?:number|no\b\.?)"
    r"|unit\s{1,3}(?:number|no\b\.?)|case\s?notes?\s{1,3}(?:number|no\b\.?)|patient\s{1,3}(?:id|number)\b)"
    r"[\s:=#\-–.]{0,5}(?:(?:is|was)\s{1,3})?"
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
        digits = m.group().replace(" ", "").replace("-", "")
        keyword = _ID_KEYWORD_BEFORE.search(text, max(0, m.start() - 30), m.start())
        kind: PiiKind | None = None
        if keyword is not None:
            kind = "chi_number" if keyword.group("kw").upper() == "CHI" else "nhs_number"
        elif _mod11_check_digit(digits[:9]) == int(digits[9]):
            # Same checksum for both; a real DDMMYY start (only CHI numbers begin 01-31) makes it a CHI number.
            kind = "chi_number" if _is_chi_date(digits) else "nhs_number"
        if kind is not None:
            yield (_PRIORITY["ten_digit"], m.start(), m.end(), kind)


def _phone_candidates(text: str) -> Iterator[_Candidate]:
    for m in _PHONE.finditer(text):
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
    has_digit = any(ch.isdigit() for ch in text)
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
    """Every patient-identifiable span in `text`, in order, one hit per span (the most specific kind wins)."""
    starts: list[int] = []
    ends: list[int] = []
    kinds: list[PiiKind] = []
    for _priority, start, end, kind in sorted(_candidates(text)):
        i = bisect.bisect_left(starts, start)
        if (i > 0 and ends[i - 1] > start) or (i < len(starts) and starts[i] < end):
            continue
        starts.insert(i, start)
        ends.insert(i, end)
        kinds.insert(i, kind)
    return [PiiHit(kind=k, start=s, end=e) for k, s, e in zip(kinds, starts, ends, strict=True)]


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
    for m in _INCIDENT.finditer(text):
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
