"""The PII guard and incident pointer: what is flagged, what is not, and what the person is told."""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.errors import DomainError
from handlers.privacy import (
    FieldHit,
    PiiFound,
    PiiHit,
    check_fields,
    guard,
    incident_pointer,
    incident_terms,
    redact,
    scan,
)

REFERENCE = Path("/work/shared/reference")
NHS_VECTORS = json.loads((REFERENCE / "nhs-number-vectors" / "nhs-number-vectors.json").read_text())
POSTCODE_DIR = REFERENCE / "uk-postcode-ideal-postcodes"
DATA = Path(__file__).parent / "privacy_data"
MARK = re.compile(r"\[\[(\w+):(.*?)\]\]")


def kinds(text: str) -> list[str]:
    return [hit.kind for hit in scan(text)]


def found(text: str) -> list[tuple[str, str]]:
    """(kind, matched text) for each hit: the test's view, never the module's."""
    return [(hit.kind, text[hit.start : hit.end]) for hit in scan(text)]


def corpus_lines(name: str) -> list[str]:
    lines = (DATA / name).read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


def unmark(line: str) -> tuple[str, list[tuple[str, int, int]]]:
    """Strip `[[kind:value]]` markers, returning the plain text and the expected (kind, start, end) spans."""
    text, expected, last = "", [], 0
    for m in MARK.finditer(line):
        text += line[last : m.start()]
        expected.append((m.group(1), len(text), len(text) + len(m.group(2))))
        text += m.group(2)
        last = m.end()
    return text + line[last:], expected


def mod11_valid(digits: str) -> bool:
    """Independent Modulus-11 check, as the NHS Data Dictionary defines it, for choosing vectors."""
    if len(digits) != 10 or not digits.isdigit():
        return False
    check = 11 - sum(int(d) * w for d, w in zip(digits[:9], range(10, 1, -1), strict=True)) % 11
    return check != 10 and check % 11 == int(digits[9])


def as_ten(value: Any) -> str:
    """Integer vectors lose their leading zero; the vector file says to left-pad them."""
    return str(value).zfill(10) if isinstance(value, int) else str(value)


def spaced(digits: str, sep: str) -> str:
    return f"{digits[:3]}{sep}{digits[3:6]}{sep}{digits[6:]}"


VALID_NHS = sorted({as_ten(v["input"]).strip() for v in NHS_VECTORS["validity"] if v["expected_valid"] is True})
INVALID_NHS = sorted({as_ten(v["input"]) for v in NHS_VECTORS["validity"] if v["expected_valid"] is False})
INVALID_TEN_DIGIT = [v for v in INVALID_NHS if re.fullmatch(r"\d{10}", v)]


# --- NHS and CHI numbers ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("digits", VALID_NHS)
@pytest.mark.parametrize(
    "template",
    [
        "{plain}",
        "{spaces}",
        "{dashes}",
        "Wristband said {spaces} and the chart agreed.",
        "Checked against the label ({plain}).",
        "Number on the form was {dashes}.",
    ],
)
def test_every_valid_vector_is_flagged_in_each_format(digits: str, template: str) -> None:
    text = template.format(plain=digits, spaces=spaced(digits, " "), dashes=spaced(digits, "-"))
    hits = scan(text)
    assert len(hits) == 1
    assert hits[0].kind in ("nhs_number", "chi_number")
    assert re.sub(r"\D", "", text[hits[0].start : hits[0].end]) == digits


def test_the_vectors_include_both_kinds_and_the_worked_example() -> None:
    assert "9434765919" in VALID_NHS
    assert kinds("943 476 5919") == ["nhs_number"]
    assert kinds("9876543210") == ["nhs_number"]  # 98 is not a day: an NHS number, not a CHI number
    assert kinds("0607230002") == ["chi_number"]  # 06/07/23 is a date and the check digit is right


@pytest.mark.parametrize("value", INVALID_NHS)
def test_invalid_vectors_are_not_nhs_numbers(value: str) -> None:
    for text in (value, f"The number {value} was on the form.", spaced(value, " ") if len(value) == 10 else value):
        assert "nhs_number" not in kinds(text)
        assert "chi_number" not in kinds(text)


@pytest.mark.parametrize("value", INVALID_TEN_DIGIT)
@pytest.mark.parametrize("keyword", ["NHS no", "NHS No.", "NHS number:", "nhs number is", "NHS#", "NHS"])
def test_an_nhs_keyword_right_before_ten_digits_flags_even_a_bad_checksum(value: str, keyword: str) -> None:
    assert found(f"{keyword} {spaced(value, ' ')} was written on the chart") == [("nhs_number", spaced(value, " "))]


def test_a_chi_keyword_makes_it_a_chi_number() -> None:
    assert found("CHI no 1234567890 from Dundee") == [("chi_number", "1234567890")]


def test_the_keyword_must_be_right_before_the_number() -> None:
    text = "The NHS number was missing, so we used the referral code 1234567890 instead."
    assert "nhs_number" not in kinds(text)


@pytest.mark.parametrize("case", NHS_VECTORS["standardise_format"])
def test_standardise_format_vectors(case: dict[str, Any]) -> None:
    text = f"number {as_ten(case['input'])} here"
    is_id = any(k in ("nhs_number", "chi_number") for k in kinds(text))
    assert is_id == (case["expected"] != "" and mod11_valid(case["expected"]))


def test_mixed_separators_and_wrong_grouping_are_not_nhs_numbers() -> None:
    for text in ("943 476-5919", "94 3476 5919", "9434 765 919", "19434765919", "9434765919123"):
        assert "nhs_number" not in kinds(text)


def test_ten_digits_glued_to_a_decimal_or_slash_are_part_of_something_else() -> None:
    for text in ("1.9434765919", "9434765919/2", "ref-9434765919-2", "x9434765919"):
        assert "nhs_number" not in kinds(text)


# --- postcodes --------------------------------------------------------------------------------------------------


def postcode_cases() -> tuple[list[str], list[str]]:
    valid: set[str] = set()
    invalid: set[str] = set()
    for path in POSTCODE_DIR.glob("*.json"):
        for case in json.loads(path.read_text())["tests"]:
            is_bad = (path.name == "validation.json" and case["expected"] is False) or (
                path.name == "normalisation.json" and case["expected"] is None
            )
            (invalid if is_bad else valid).add(case["base"])
    return sorted(valid), sorted(invalid)


VALID_POSTCODES, INVALID_POSTCODES = postcode_cases()


def test_the_postcode_fixtures_were_read() -> None:
    assert len(VALID_POSTCODES) > 20
    assert {"EH1 JS", "1A1 1AA", "12FSSD"} <= set(INVALID_POSTCODES)


@pytest.mark.parametrize("postcode", VALID_POSTCODES)
def test_valid_postcodes_are_flagged_in_a_sentence(postcode: str) -> None:
    assert found(f"We visited the team at {postcode} last week.") == [("postcode", postcode)]
    assert found(f"Address: 1 High St, {postcode}.") == [("postcode", postcode)]


@pytest.mark.parametrize("postcode", [p for p in VALID_POSTCODES if p.upper() == p and not p.startswith("A")])
def test_lower_case_postcodes_are_flagged(postcode: str) -> None:
    assert found(f"home to {postcode.lower()} today") == [("postcode", postcode.lower())]


@pytest.mark.parametrize("postcode", INVALID_POSTCODES)
def test_invalid_postcodes_are_not_flagged(postcode: str) -> None:
    assert "postcode" not in kinds(f"We visited the team at {postcode} last week.")


@pytest.mark.parametrize("postcode", ["SW1A 1AA", "M1 1AE", "B33 8TH", "CR2 6XH", "DN55 1PT", "SW1A1AA", "dn551pt"])
def test_the_issue_examples_are_postcodes(postcode: str) -> None:
    assert found(f"lives at {postcode}") == [("postcode", postcode)]


@pytest.mark.parametrize(
    "text",
    ["Ward 7B", "5mg", "5 mg", "2am", "Bay 3 bed 12", "NEWS2 5", "FY1 doctor", "Ward B1 1st floor", "b1 1st", "x1 1hr"],
)
def test_ward_names_doses_and_ordinals_are_not_postcodes(text: str) -> None:
    assert kinds(text) == []


def test_mixed_case_is_not_a_postcode() -> None:
    assert kinds("Sw1A 1aA") == []


# --- NI numbers, phones, e-mails, DOBs, hospital numbers --------------------------------------------------------


@pytest.mark.parametrize("value", ["AB 12 34 56 C", "AB123456C", "ab 12 34 56 c", "JG 10 37 54 A", "JG 10 37 54"])
def test_ni_numbers_are_flagged(value: str) -> None:
    assert found(f"NI {value} on the form") == [("ni_number", value)]


@pytest.mark.parametrize(
    "value",
    [
        "QQ 12 34 56 C",  # HMRC's specimen: Q is never a first letter
        "DA 12 34 56 C",  # D is never a first letter
        "AO 12 34 56 C",  # O is never a second letter
        "GB 12 34 56 C",  # never-issued prefixes
        "BG123456A",
        "ZZ123456A",
        "NT 12 34 56 A",
        "AB123456E",  # suffix is A-D
        "AB123456",  # without spaces a bare suffix-less run is too ambiguous (batch numbers)
    ],
)
def test_ni_prefix_rules(value: str) -> None:
    assert "ni_number" not in kinds(f"ref {value} here")


@pytest.mark.parametrize(
    "value",
    [
        "07700 900123",
        "07700900123",
        "+44 7700 900123",
        "+447700900123",
        "0044 7700 900123",
        "020 7946 0018",
        "(01632) 960001",
        "(020) 7946 0018",
        "+44 (0)20 7946 0018",
        "01632 960 001",
        "0808 157 0192",
    ],
)
def test_uk_phone_numbers_are_flagged(value: str) -> None:
    assert found(f"Call {value} after 6pm.") == [("phone_number", value)]


@pytest.mark.parametrize(
    "text",
    [
        "bleep 2345",
        "ext 4567",
        "ext. 45678",
        "dial 2222",
        "call 111",
        "observations at 0800, 1200 and 1600",
        "shifts 0800-2000 and 2000-0800",
        "0800 1200 1600 2000",
        "from 01/02/2024",
        "the 06123 456789 range is not in use",
    ],
)
def test_extensions_times_and_short_numbers_are_not_phones(text: str) -> None:
    assert kinds(text) == []


@pytest.mark.parametrize(
    "value", ["a@b.co", "john.smith@example.com", "j.bloggs+ward7@nhs.net", "X_Y-Z@mail.example.org"]
)
def test_emails_are_flagged(value: str) -> None:
    assert found(f"Email {value}, thanks") == [("email", value)]


@pytest.mark.parametrize("text", ["@copbot help", "meet @ 14:30", "foo@bar", "the team@ward"])
def test_at_signs_without_an_address_are_not_emails(text: str) -> None:
    assert kinds(text) == []


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("DOB 12/03/1956", "12/03/1956"),
        ("dob: 12-03-56", "12-03-56"),
        ("D.O.B. 12.03.1956", "12.03.1956"),
        ("d.o.b 1956-03-12", "1956-03-12"),
        ("Date of birth: 12 March 1956", "12 March 1956"),
        ("date of birth is 12th Mar 1956", "12th Mar 1956"),
        ("born on 3 Sept 1944", "3 Sept 1944"),
        ("Born 12/3/1956 in Leeds", "12/3/1956"),
        ("born in March 1956", "March 1956"),
        ("DOB (01/01/1950)", "01/01/1950"),
    ],
)
def test_dates_of_birth_are_flagged_near_a_keyword(text: str, value: str) -> None:
    assert found(text) == [("date_of_birth", value)]


@pytest.mark.parametrize(
    "text",
    [
        "on 12/03/2024 we started",
        "Admitted 12 March 2024 and discharged 14 March 2024.",
        "The idea was born out of a near miss on 12/03/2023.",
        "The project was born in 2019.",
        "Our DOB checks at handover caught two errors on 12/03/2024 alone.",
    ],
)
def test_dates_without_a_dob_keyword_right_before_are_not_flagged(text: str) -> None:
    assert "date_of_birth" not in kinds(text)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("MRN RXX123456", "RXX123456"),
        ("MRN: 1234567", "1234567"),
        ("hospital number 12345678", "12345678"),
        ("Hospital No. RXH 0012345", "RXH 0012345"),
        ("hosp no K1234567", "K1234567"),
        ("unit number is A123456", "A123456"),
        ("medical record number 00123456", "00123456"),
    ],
)
def test_hospital_numbers_are_flagged_near_a_keyword(text: str, value: str) -> None:
    assert found(text) == [("hospital_number", value)]


@pytest.mark.parametrize(
    "text",
    ["RXX123456 on the audit", "unit number 4", "the hospital number is read aloud", "MRN checks on the new EPR"],
)
def test_hospital_style_codes_without_keyword_or_digits_are_not_flagged(text: str) -> None:
    assert kinds(text) == []


# --- corpora ----------------------------------------------------------------------------------------------------

SAFE = corpus_lines("safe_prose.txt")
FLAGGED = corpus_lines("must_flag.txt")


def test_the_corpora_are_big_enough() -> None:
    assert len(SAFE) >= 60
    assert len(FLAGGED) >= 40


@pytest.mark.parametrize("line", SAFE)
def test_realistic_clinical_prose_is_not_flagged(line: str) -> None:
    assert found(line) == []


@pytest.mark.parametrize("line", FLAGGED)
def test_the_must_flag_corpus_is_flagged_with_the_expected_kind_and_span(line: str) -> None:
    text, expected = unmark(line)
    assert expected, "a must-flag line needs at least one [[kind:value]] marker"
    assert [(h.kind, h.start, h.end) for h in scan(text)] == expected


@pytest.mark.parametrize("line", FLAGGED)
def test_redact_removes_every_marked_value(line: str) -> None:
    text, expected = unmark(line)
    redacted = redact(text)
    for kind, start, end in expected:
        assert text[start:end] not in redacted
        assert f"[removed: {kind}]" in redacted
    assert scan(redacted) == []


def test_redact_leaves_clean_text_alone() -> None:
    assert redact(SAFE[0]) == SAFE[0]
    assert redact("") == ""


# --- properties -------------------------------------------------------------------------------------------------

FRAGMENTS = [
    "943 476 5919",
    "9434765919",
    "NHS no ",
    "SW1A 1AA",
    "m1 1ae",
    "AB 12 34 56 C",
    "07700 900123",
    "+44 ",
    "(01632) 960001",
    "a.b@example.com",
    "@",
    "DOB ",
    "12/03/1956",
    "MRN ",
    "RXX123456",
    "Ward 7B ",
    "5mg ",
    " ",
    "-",
    "0",
]
texts = st.one_of(
    st.text(max_size=300),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=8)), max_size=30).map("".join),
)


@settings(max_examples=400, deadline=None)
@given(texts)
def test_scan_never_raises_and_hits_are_in_bounds_ordered_and_private(text: str) -> None:
    hits = scan(text)
    previous_end = 0
    for hit in hits:
        assert previous_end <= hit.start < hit.end <= len(text)
        previous_end = hit.end
        assert text[hit.start : hit.end] not in repr(hit)
        assert hit.describe()
    redact(text)
    incident_terms(text)


@pytest.mark.parametrize(
    "text",
    [
        "9" * 200_000,
        "a" * 200_000 + "@",
        "1 " * 100_000,
        "DOB " * 50_000,
        "MRN " * 50_000 + "1",
        "AB 12 " * 40_000,
        "+44 " * 50_000,
        "a1 " * 70_000,
        "near " * 40_000,
    ],
)
def test_scanning_adversarial_text_is_linear(text: str) -> None:
    started = time.perf_counter()
    scan(text)
    incident_terms(text)
    assert time.perf_counter() - started < 2.0


def test_hit_repr_and_describe() -> None:
    hit = scan("NHS no 943 476 5919")[0]
    assert repr(hit) == "PiiHit(kind='nhs_number', start=7, end=19)"
    assert hit.describe() == "an NHS number"
    assert PiiHit("email", 0, 5).describe() == "an e-mail address"


# --- the guard and what the person is told ----------------------------------------------------------------------


def test_a_clean_story_is_saved() -> None:
    guard({"situation": SAFE[0], "actions": SAFE[1], "empty": ""})
    assert check_fields({"situation": SAFE[0]}) == []


def test_guard_names_the_field_label_and_the_kind_never_the_value(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(PiiFound) as raised:
        guard({"situation": "Seen by FY1, NHS no 943 476 5919."}, labels={"situation": "Situation"})
    error = raised.value
    assert isinstance(error, DomainError)
    assert error.message == (
        "I can't save this: the *Situation* field looks like it contains an NHS number. "
        "Please remove patient-identifiable details and try again."
    )
    assert error.hits == [FieldHit(field="situation", kind="nhs_number")]
    assert error.hits[0].label == "Situation"
    for shown in (error.user_text(), str(error), caplog.text, repr(error.hits)):
        assert "943" not in shown
        assert "5919" not in shown


def test_several_fields_and_kinds_are_all_named() -> None:
    fields = {
        "situation": "Daughter on 07700 900123, email a.b@example.com, and again 07700 900456",
        "actions": "Sent to SW1A 1AA",
        "learning": "Huddles at 14:30 work.",
    }
    with pytest.raises(PiiFound) as raised:
        guard(fields, labels={"situation": "What happened", "actions": "What we did"})
    assert raised.value.hits == [
        FieldHit("situation", "phone_number"),
        FieldHit("situation", "email"),
        FieldHit("actions", "postcode"),
    ]
    message = raised.value.message
    assert "the *What happened* field looks like it contains a phone number and an e-mail address" in message
    assert "the *What we did* field looks like it contains a postcode" in message
    assert "Huddles" not in message
    assert "900123" not in message


def test_without_labels_the_field_key_is_shown() -> None:
    assert check_fields({"notes": "DOB 01/01/1950"}) == [FieldHit("notes", "date_of_birth")]
    with pytest.raises(PiiFound, match=r"the \*notes\* field looks like it contains a date of birth"):
        guard({"notes": "DOB 01/01/1950"})


# --- incident language ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "terms"),
    [
        ("We caught a near miss at handover.", ["near miss"]),
        ("Two NEAR-MISSES last month", ["near miss"]),
        ("I put in a Datix straight away", ["Datix"]),
        ("it was datixed by the night team", ["Datix"]),
        ("No harm came to the patient", ["harm"]),
        ("The patient was harmed", ["harm"]),
        ("An incident on the ward", ["incident"]),
        ("It was declared a Never Event", ["never event"]),
        ("A serious incident investigation followed", ["serious incident"]),
        ("an Adverse Event report", ["adverse event"]),
        ("reported as a patient safety incident on LFPSE", ["patient safety incident", "LFPSE"]),
        ("A near miss, then a Datix, then another near miss and some harm", ["near miss", "Datix", "harm"]),
    ],
)
def test_incident_terms_are_found_case_insensitively(text: str, terms: list[str]) -> None:
    assert incident_terms(text) == terms


@pytest.mark.parametrize(
    "text",
    [
        "The change was harmless and quick",  # "harmless" says there was no harm
        "Harm-free care rose to 96%",  # an improvement measure, not an event
        "harm free care is the goal",
        "Pharmacy reviewed every chart",
        "A charming thank-you card",
        "An incidental finding on the X-ray",
        "Coincidentally the huddle moved too",
        "Huddles at 14:30 work well",
    ],
)
def test_no_incident_language(text: str) -> None:
    assert incident_terms(text) == []
    assert incident_pointer(text, incident_url="https://trust.example/report") is None


def test_the_pointer_is_gentle_and_links_to_the_trust_route() -> None:
    pointer = incident_pointer("We had a near miss and a Datix", incident_url="https://trust.example/report")
    assert pointer is not None
    assert "_near miss_ and _Datix_" in pointer
    assert pointer.endswith("https://trust.example/report")  # nothing glued to the link
    assert "doesn't replace reporting" in pointer


def test_without_a_configured_url_the_pointer_names_the_usual_route() -> None:
    pointer = incident_pointer("there was harm", incident_url=None)
    assert pointer is not None
    assert "usual incident reporting system" in pointer
    assert "http" not in pointer


def test_incident_language_never_blocks_saving() -> None:
    guard({"situation": "A near miss with insulin led to a Datix and a serious incident review."})
