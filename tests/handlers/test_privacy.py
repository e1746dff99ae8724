"""The PII guard and incident pointer: what is flagged, what is not, and what the person is told."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.bench_privacy import ADVERSARIAL
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
from tests.reference import reference_path

NHS_VECTORS = json.loads(reference_path("nhs-number-vectors", "nhs-number-vectors.json").read_text())
POSTCODE_DIR = reference_path("uk-postcode-ideal-postcodes")
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


def test_redact_leaves_clean_text_alone() -> None:
    assert redact(SAFE[0]) == SAFE[0]
    assert redact("") == ""


# --- however it was typed or pasted -----------------------------------------------------------------------------
# Each look-alike below is written out by hand (not derived from the module), so these tests say what "the same
# number" means independently of how the guard folds text.

SPACE_LIKES = {
    "no-break space": "\u00a0",
    "narrow no-break space": "\u202f",
    "thin space": "\u2009",
    "figure space": "\u2007",
    "ideographic space": "\u3000",
    "en quad": "\u2000",
    "tab": "\t",
    "newline": "\n",
    "CR LF": "\r\n",
    "two spaces": "  ",
    "space and zero-width space": " \u200b",
}
DASH_LIKES = {
    "hyphen": "\u2010",
    "non-breaking hyphen": "\u2011",
    "figure dash": "\u2012",
    "en dash": "\u2013",
    "em dash": "\u2014",
    "horizontal bar": "\u2015",
    "minus sign": "\u2212",
    "small hyphen-minus": "\ufe63",
    "fullwidth hyphen-minus": "\uff0d",
    "spaced hyphen": " - ",
    "spaced en dash": " \u2013 ",
}
OTHER_SEPARATORS = {"dot": ".", "underscore": "_", "fullwidth full stop": "\uff0e", "middle dot": "\u00b7"}
INVISIBLES = {
    "zero-width space": "\u200b",
    "zero-width non-joiner": "\u200c",
    "zero-width joiner": "\u200d",
    "word joiner": "\u2060",
    "soft hyphen": "\u00ad",
    "byte-order mark": "\ufeff",
    "left-to-right mark": "\u200e",
    "right-to-left mark": "\u200f",
    "left-to-right embedding": "\u202a",
    "right-to-left embedding": "\u202b",
    "pop directional formatting": "\u202c",
    "left-to-right override": "\u202d",
    "right-to-left override": "\u202e",
    "left-to-right isolate": "\u2066",
    "right-to-left isolate": "\u2067",
    "first strong isolate": "\u2068",
    "pop directional isolate": "\u2069",
    "combining grapheme joiner": "\u034f",
    "variation selector 16": "\ufe0f",
    "Mongolian vowel separator": "\u180e",
    "Hangul filler": "\u3164",
}
DIGIT_ZEROS = {  # the code point of "0" in each run of ten digit forms
    "fullwidth": 0xFF10,
    "Arabic-Indic": 0x0660,
    "extended Arabic-Indic": 0x06F0,
    "Devanagari": 0x0966,
    "Bengali": 0x09E6,
    "mathematical bold": 0x1D7CE,
    "mathematical double-struck": 0x1D7D8,
    "mathematical monospace": 0x1D7F6,
}
SUPERSCRIPTS = "\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079"
SUBSCRIPTS = "".join(chr(0x2080 + d) for d in range(10))


def digit_forms() -> dict[str, str]:
    """For each digit form, a translation table from ASCII digits to it."""
    forms = {name: "".join(chr(zero + d) for d in range(10)) for name, zero in DIGIT_ZEROS.items()}
    forms["superscript"] = SUPERSCRIPTS
    forms["subscript"] = SUBSCRIPTS
    return forms


DIGIT_FORMS = digit_forms()


def in_form(text: str, form: str) -> str:
    return text.translate(str.maketrans("0123456789", DIGIT_FORMS[form]))


def fullwidth(text: str) -> str:
    """ASCII letters, digits and punctuation as their fullwidth forms (the space stays a space)."""
    return "".join(chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ch for ch in text)


def sprinkle(text: str, invisible: str) -> str:
    """`invisible` between every pair of characters."""
    return invisible.join(text)


ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})|\\t")


def decode_escapes(line: str) -> str:
    return ESCAPE.sub(lambda m: chr(int(m.group(1) or m.group(2), 16)) if m.group(1) or m.group(2) else "\t", line)


def test_the_escape_decoder_reads_both_widths() -> None:
    assert decode_escapes(r"a\u00a0b\U0001d7d7\tc") == "a\u00a0b\U0001d7d7\tc"


VALID_BY_FORM = [(digits, form) for digits in VALID_NHS for form in DIGIT_FORMS]


@pytest.mark.parametrize("separator", [*SPACE_LIKES.values(), *DASH_LIKES.values(), *OTHER_SEPARATORS.values()])
@pytest.mark.parametrize("digits", VALID_NHS)
def test_a_valid_vector_with_any_separator_is_flagged_whole(digits: str, separator: str) -> None:
    number = spaced(digits, separator)
    hits = found(f"The label read {number} today.")
    assert len(hits) == 1
    kind, value = hits[0]
    assert value == number
    assert kind in ("nhs_number", "chi_number")


@pytest.mark.parametrize(("digits", "form"), VALID_BY_FORM)
def test_a_valid_vector_in_any_digit_form_is_flagged_whole(digits: str, form: str) -> None:
    for number in (in_form(digits, form), in_form(spaced(digits, " "), form), in_form(spaced(digits, "-"), form)):
        text = f"Pasted: {number}."
        hits = found(text)
        assert len(hits) == 1, (form, number)
        assert hits[0][1] == number
        assert hits[0][0] in ("nhs_number", "chi_number")


@pytest.mark.parametrize("invisible", INVISIBLES.values(), ids=INVISIBLES.keys())
@pytest.mark.parametrize("digits", VALID_NHS)
def test_a_valid_vector_with_invisibles_between_every_digit_is_flagged(digits: str, invisible: str) -> None:
    for number in (sprinkle(digits, invisible), sprinkle(spaced(digits, " "), invisible)):
        text = f"In the note {invisible}{number}{invisible} was pasted."
        assert [kind for kind, _ in found(text)] in (["nhs_number"], ["chi_number"])
        assert found(text)[0][1] == number  # the invisibles either side are left where they were


@pytest.mark.parametrize("invisible", INVISIBLES.values(), ids=INVISIBLES.keys())
@pytest.mark.parametrize("value", INVALID_TEN_DIGIT)
def test_folding_never_makes_an_invalid_vector_an_nhs_number(value: str, invisible: str) -> None:
    for text in (sprinkle(value, invisible), fullwidth(value), spaced(value, "\u2013"), spaced(value, "\u00a0")):
        assert "nhs_number" not in kinds(f"The code {text} was on the box.")
        assert "chi_number" not in kinds(f"The code {text} was on the box.")


@pytest.mark.parametrize("value", INVALID_TEN_DIGIT)
@pytest.mark.parametrize(
    "keyword", ["NHS\u00a0no", "NHS\u2011number:", "\uff2e\uff28\uff33 no", "N\u200bH\u200bS number is", "NHS\u00a0#"]
)
def test_a_folded_nhs_keyword_still_flags_a_bad_checksum(value: str, keyword: str) -> None:
    number = spaced(value, "\u00a0")
    assert found(f"{keyword} {number} on the chart") == [("nhs_number", number)]


@pytest.mark.parametrize(
    "text",
    [
        "943\u00a0476-5919",  # a no-break space and a hyphen are still two separator styles
        "943\u2013476 5919",
        "943.476 5919",
        "943.476-5919",
        "94\u00a03476\u00a05919",  # wrong grouping stays wrong however it is spaced
        "9434\u2013765\u2013919",
        "1.943.476.5919",  # a dotted run inside a longer dotted run: a version or an address
        "943.476.5919.2",
        "943/476/5919",  # slashes without the keyword: a reference or a fraction
        "ref/943/476/5919",
        "x\uff19\uff14\uff13\uff14\uff17\uff16\uff15\uff19\uff11\uff19",  # glued to a letter, folded or not
    ],
)
def test_folded_mixed_separators_glued_numbers_and_slashes_are_not_nhs_numbers(text: str) -> None:
    assert "nhs_number" not in kinds(text)


def test_slashes_count_only_after_an_nhs_keyword() -> None:
    assert found("NHS no 943/476/5919 on the form") == [("nhs_number", "943/476/5919")]


def test_underscores_are_separators_and_not_glue_for_ten_digit_numbers() -> None:
    assert found("scan_9434765919.pdf") == [("nhs_number", "9434765919")]
    assert found("a 943_476_5919 b") == [("nhs_number", "943_476_5919")]
    assert "nhs_number" not in kinds("x9434765919")


@pytest.mark.parametrize("postcode", VALID_POSTCODES)
def test_valid_postcodes_typed_with_look_alikes_are_flagged(postcode: str) -> None:
    variants = [fullwidth(postcode), postcode.replace(" ", "\u00a0"), postcode.replace(" ", "\u2009")]
    variants.append(sprinkle(postcode, "\u200b"))
    for variant in variants:
        assert found(f"We visited the team at {variant} last week.") == [("postcode", variant)], variant


@pytest.mark.parametrize("postcode", INVALID_POSTCODES)
def test_invalid_postcodes_stay_unflagged_when_folded(postcode: str) -> None:
    for variant in (fullwidth(postcode), postcode.replace(" ", "\u00a0"), sprinkle(postcode, "\u200b")):
        assert "postcode" not in kinds(f"We visited the team at {variant} last week.")


@pytest.mark.parametrize(
    "value",
    [
        "07700.900.123",
        "0161.496.0000",
        "07700\u00a0900123",
        "07700\u2013900\u2013123",
        "07700 \u2013 900123",
        "+44\u00a07700\u00a0900123",
        "\uff0b44 7700 900123",
        "\uff10\uff17\uff17\uff10\uff10 \uff19\uff10\uff10\uff11\uff12\uff13",
        "\u0660\u0667\u0667\u0660\u0660 \u0669\u0660\u0660\u0661\u0662\u0663",
        "020\u202f7946\u202f0018",
        "(020)\u00a07946\u00a00018",
        "+44\u00a0(0)20\u00a07946\u00a00018",
        "07700\u200b900\u200b123",
        "07700\u2003\u2003900123",  # two em spaces fold, then collapse into one separator
    ],
)
def test_uk_phone_numbers_typed_with_look_alikes_are_flagged(value: str) -> None:
    assert found(f"Call {value} after 6pm.") == [("phone_number", value)]


@pytest.mark.parametrize(
    "text",
    [
        "on 01.02.2024 14 patients were seen",
        "on 01-02-2024 14 patients were seen",  # a date and a count, not a number grouped 01-02-2024-14
        "on 01 02 2024 14 patients were seen",
        "on 01\u201302\u20132024 14 patients were seen",
        "dose 0.5 mg at 07.30 then 1.5 mg at 19.30",
        "version 10.12.3456.7890 of the driver",
        "01.02.2024 10.30 huddle",
        "0.123456789 was the p-value",
    ],
)
def test_dotted_and_dashed_dates_doses_and_versions_are_not_phones(text: str) -> None:
    assert kinds(text) == []


@pytest.mark.parametrize(
    "value",
    [
        "john.smith\uff20example.com",
        "john.smith\ufe6bexample.com",
        "john.smith@example\uff0ecom",
        "\uff4a\uff4f\uff48\uff4e@example.com",
        "john\u200b.smith@example.com",
        "john.smith@\u200bexample.com",
        "john.smith\u00ad@example.com",
    ],
)
def test_emails_typed_with_look_alikes_are_flagged(value: str) -> None:
    assert found(f"Email {value}, thanks") == [("email", value)]


@pytest.mark.parametrize(
    "value",
    [
        "AB\u00a012\u00a034\u00a056\u00a0C",
        "AB-12-34-56-C",
        "AB\u201312\u201334\u201356\u2013C",
        "\uff21\uff22\uff11\uff12\uff13\uff14\uff15\uff16\uff23",
        "A\u200bB123456C",
        "JG\u202f10\u202f37\u202f54",
        "JG-10-37-54",
    ],
)
def test_ni_numbers_typed_with_look_alikes_are_flagged(value: str) -> None:
    assert found(f"NI {value} on the form") == [("ni_number", value)]


def test_the_ni_prefix_rules_survive_folding() -> None:
    for value in ("QQ\u00a012\u00a034\u00a056\u00a0C", "\uff27\uff22123456A", "AB-123456", "AB 12-34 56"):
        assert "ni_number" not in kinds(f"ref {value} here")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("DOB\u00a012/03/1956", "12/03/1956"),
        ("dob: 12\u201303\u201356", "12\u201303\u201356"),
        ("D.O.B. 12\uff0e03\uff0e1956", "12\uff0e03\uff0e1956"),
        ("d.o.b 1956\u2212 03\u221212", None),  # a space inside one date is not a date
        ("Date\u00a0of\u00a0birth: 12\u00a0March\u00a01956", "12\u00a0March\u00a01956"),
        ("born on \uff13 Sept \uff11\uff19\uff14\uff14", "\uff13 Sept \uff11\uff19\uff14\uff14"),
        ("Born 12\u2044 3\u20441956 in Leeds", None),
        ("Born 12\u20443\u20441956 in Leeds", "12\u20443\u20441956"),
        ("D\u200bO\u200bB (01\uff0f01\uff0f1950)", "01\uff0f01\uff0f1950"),
        (
            "DOB \u0661\u0662/\u0660\u0663/\u0661\u0669\u0665\u0666",
            "\u0661\u0662/\u0660\u0663/\u0661\u0669\u0665\u0666",
        ),
    ],
)
def test_dates_of_birth_typed_with_look_alikes_are_flagged(text: str, value: str | None) -> None:
    assert found(text) == ([("date_of_birth", value)] if value is not None else [])


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("MRN\u00a0RXX123456", "RXX123456"),
        ("MRN: \uff11\uff12\uff13\uff14\uff15\uff16\uff17", "\uff11\uff12\uff13\uff14\uff15\uff16\uff17"),
        ("hospital\u00a0number 1234\u200b5678", "1234\u200b5678"),
        ("Hospital No. RXH\u20130012345", "RXH\u20130012345"),
        ("hosp\u00a0no K1234567", "K1234567"),
        ("\uff2d\uff32\uff2e RXX123456", "RXX123456"),
    ],
)
def test_hospital_numbers_typed_with_look_alikes_are_flagged(text: str, value: str) -> None:
    assert found(text) == [("hospital_number", value)]


def test_offsets_are_in_the_original_text_after_expanding_and_dropped_characters() -> None:
    # "\u2474" (parenthesised 1) folds to three characters, "\u33a1" to two, the zero-width spaces to none.
    before = "\u2474 \u33a1 \u200b\u200bWard\u00a0\u00a07B, NHS\u00a0no \u200b"
    text = before + "943\u2009476\u20095919\u200b, \u2474 SW1A\u00a01AA"
    assert found(text) == [("nhs_number", "943\u2009476\u20095919"), ("postcode", "SW1A\u00a01AA")]
    hits = scan(text)
    assert hits[0].start == len(before)
    assert redact(text) == before + "[removed: nhs_number]\u200b, \u2474 [removed: postcode]"


def test_redact_of_a_folded_hit_leaves_no_digit_of_it() -> None:
    text = "Label: \uff19\uff14\uff13\u00a0\uff14\uff17\uff16\u00a0\uff15\uff19\uff11\uff19 (checked)."
    assert redact(text) == "Label: [removed: nhs_number] (checked)."


def test_incident_language_is_found_through_look_alikes_too() -> None:
    assert incident_terms("a near\u00a0miss, then a near\u2011miss, then Dat\u200bix") == ["near miss", "Datix"]
    assert incident_terms("harm\u2014free care rose") == []


SAFE_UNICODE = [decode_escapes(line) for line in corpus_lines("safe_prose_unicode.txt")]
FLAGGED_UNICODE = [decode_escapes(line) for line in corpus_lines("must_flag_unicode.txt")]


def test_the_unicode_corpora_are_big_enough_and_really_unicode() -> None:
    assert len(SAFE_UNICODE) >= 30
    assert len(FLAGGED_UNICODE) >= 50
    assert sum(not line.isascii() for line in FLAGGED_UNICODE) >= 50  # the escapes were decoded


@pytest.mark.parametrize("line", SAFE + SAFE_UNICODE)
def test_realistic_clinical_prose_is_not_flagged(line: str) -> None:
    assert found(line) == []


@pytest.mark.parametrize("line", FLAGGED + FLAGGED_UNICODE)
def test_the_must_flag_corpus_is_flagged_with_the_expected_kind_and_span(line: str) -> None:
    text, expected = unmark(line)
    assert expected, "a must-flag line needs at least one [[kind:value]] marker"
    assert [(h.kind, h.start, h.end) for h in scan(text)] == expected


@pytest.mark.parametrize("line", FLAGGED + FLAGGED_UNICODE)
def test_redact_removes_every_marked_value(line: str) -> None:
    text, expected = unmark(line)
    redacted = redact(text)
    for kind, start, end in expected:
        assert text[start:end] not in redacted
        assert f"[removed: {kind}]" in redacted
    assert scan(redacted) == []


@pytest.mark.parametrize("field", ["name", "purpose", "profession"])
def test_guard_blocks_a_folded_identifier_in_any_field(field: str) -> None:
    with pytest.raises(PiiFound) as raised:
        guard({field: "Ward\u00a07B \u2014 call \uff10\uff17\uff17\uff10\uff10\u00a0900123"}, labels={field: "Label"})
    assert raised.value.hits == [FieldHit(field, "phone_number")]
    assert "\uff10" not in raised.value.message
    assert "900123" not in raised.value.message


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
LOOK_ALIKES = [
    *SPACE_LIKES.values(),
    *DASH_LIKES.values(),
    *INVISIBLES.values(),
    "\uff19",
    "\u0669",
    "\uff20",
    "\u2474",
]
texts = st.one_of(
    st.text(max_size=300),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=8)), max_size=30).map("".join),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.sampled_from(LOOK_ALIKES)), max_size=40).map("".join),
)


@st.composite
def disguised(draw: st.DrawFn, line: str) -> tuple[str, list[int], list[int]]:
    """`line` re-typed with look-alikes, with where each original character begins and ends in the result.

    Invisibles go anywhere; each space may become any space-like; each hyphen any dash-like; each digit any digit
    form; each letter its fullwidth form. The maps let a test say exactly where a span must land.
    """
    out = ""
    begins: list[int] = []
    ends: list[int] = []
    invisible = st.sampled_from(sorted(INVISIBLES.values()))
    spaces = st.sampled_from([" ", *SPACE_LIKES.values()])
    # The spaced dashes stay out: " - " inside a date or an NI number is not the same identifier any more.
    dashes = st.sampled_from(["-", *[d for d in DASH_LIKES.values() if " " not in d]])
    for ch in line:
        if draw(st.integers(0, 4)) == 0:
            out += draw(invisible)
        begins.append(len(out))
        if ch == " ":
            out += draw(spaces)
        elif ch == "-":
            out += draw(dashes)
        elif ch.isdigit():
            form = draw(st.sampled_from(["ascii", *DIGIT_FORMS]))
            out += ch if form == "ascii" else in_form(ch, form)
        elif ch.isascii() and ch.isalpha() and draw(st.booleans()):
            out += fullwidth(ch)
        else:
            out += ch
        ends.append(len(out))
    if draw(st.booleans()):
        out += draw(invisible)
    return out, begins, ends


@st.composite
def disguised_positive(draw: st.DrawFn) -> tuple[str, list[tuple[str, int, int]]]:
    """A must-flag line re-typed with look-alikes, and its expected spans moved to match."""
    text, expected = unmark(draw(st.sampled_from(FLAGGED)))
    variant, begins, ends = draw(disguised(text))
    return variant, [(kind, begins[start], ends[end - 1]) for kind, start, end in expected]


@settings(max_examples=500, deadline=None)
@given(disguised_positive())
def test_retyping_a_known_positive_with_look_alikes_never_loses_or_moves_a_hit(
    case: tuple[str, list[tuple[str, int, int]]],
) -> None:
    variant, expected = case
    assert [(h.kind, h.start, h.end) for h in scan(variant)] == expected


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SAFE).flatmap(disguised))
def test_retyping_safe_prose_with_look_alikes_never_flags_it(case: tuple[str, list[int], list[int]]) -> None:
    assert scan(case[0]) == []


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(VALID_NHS),
    st.sampled_from([*SPACE_LIKES.values(), *DASH_LIKES.values(), ".", "_"]),
    st.lists(st.tuples(st.integers(0, 12), st.sampled_from(sorted(INVISIBLES.values()))), max_size=6),
)
def test_any_separator_and_any_invisibles_keep_a_valid_vector_flagged(
    digits: str, separator: str, inserts: list[tuple[int, str]]
) -> None:
    number = spaced(digits, separator)
    chars = list(number)
    for at, invisible in inserts:
        # Strictly inside the number, so the expected span is the whole disguised number.
        chars.insert(1 + at % (len(chars) - 1), invisible)
    disguised_number = "".join(chars)
    text = f"Wristband ({disguised_number}) checked."
    hits = found(text)
    assert len(hits) == 1
    assert hits[0][1] == disguised_number
    assert hits[0][0] in ("nhs_number", "chi_number")


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


@pytest.mark.parametrize("text", ADVERSARIAL, ids=[f"adversarial-{i}" for i in range(len(ADVERSARIAL))])
def test_adversarial_text_is_scanned_to_the_end_with_well_formed_hits(text: str) -> None:
    # How long it takes (linear, not backtracking) is measured by `scripts/bench privacy`, never timed here.
    hits = scan(text)
    assert all(0 <= h.start < h.end <= len(text) for h in hits)
    assert [h.start for h in hits] == sorted(h.start for h in hits)
    assert isinstance(incident_terms(text), list)


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
