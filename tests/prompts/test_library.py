"""Tests for the prompt library: shipped content, validation messages, rotation and packaging."""

from __future__ import annotations

import ast
import importlib.resources
import itertools
import re
import sys
import textwrap
import tomllib
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prompts import library
from prompts.library import (
    CYCLES,
    KINDS,
    STAGES,
    LibraryError,
    Prompt,
    Starter,
    Theme,
    load_prompts,
    load_starters,
    load_themes,
    next_prompt,
    pick_starter,
)

REPO = Path(__file__).resolve().parents[2]
REQUIRED_THEMES = {
    "communication",
    "handover",
    "medicines",
    "deterioration",
    "falls",
    "infection-prevention",
    "teamwork",
    "human-factors",
    "patient-involvement",
    "pressure-ulcers",
    "sepsis",
    "discharge",
    "safeguarding",
    "staff-wellbeing",
    "learning-culture",
    "digital",
    "maternity",
    "mental-health",
}
KIND_PREFIX = {
    "safety-ii": "sii-",
    "reflective-cycle": "rc-",
    "learning-from-excellence": "lfe-",
    "value-creation": "vc-",
}
TEST_THEMES = (Theme("teamwork", "Teamwork", "d"), Theme("handover", "Handover", "d"))


def write(tmp_path: Path, text: str, name: str = "prompts.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def prompt_toml(**fields: str) -> str:
    """One [[prompt]] entry: a valid safety-ii prompt, with ``fields`` replacing or adding raw TOML values."""
    values = {"id": '"sii-ok"', "text": '"What went well?"', "themes": '["teamwork"]', "kind": '"safety-ii"'}
    values.update(fields)
    body = "".join(f"{key} = {value}\n" for key, value in values.items() if value != "OMIT")
    return "[[prompt]]\n" + body


def problems_of(tmp_path: Path, toml: str) -> str:
    with pytest.raises(LibraryError) as caught:
        load_prompts(write(tmp_path, toml), known_themes=TEST_THEMES)
    return str(caught.value)


# --- the shipped library ---------------------------------------------------------------------------------------


def test_shipped_library_has_at_least_60_prompts_of_every_kind_cycle_and_stage() -> None:
    shipped = library.prompts()
    assert len(shipped) >= 60
    assert set(Counter(p.kind for p in shipped)) == set(KINDS)
    assert {p.cycle for p in shipped if p.kind == "value-creation"} == set(CYCLES)
    assert {p.stage for p in shipped if p.kind == "reflective-cycle"} == set(STAGES)


def test_shipped_prompts_follow_the_id_prefix_convention() -> None:
    wrong = [p.id for p in library.prompts() if not p.id.startswith(KIND_PREFIX[p.kind])]
    assert wrong == []


def test_shipped_themes_include_the_whole_taxonomy_and_every_theme_has_a_prompt() -> None:
    theme_ids = {t.id for t in library.themes()}
    assert theme_ids >= REQUIRED_THEMES
    used = {theme for p in library.prompts() for theme in p.themes}
    assert theme_ids - used == set()


def test_shipped_starters_number_at_least_20() -> None:
    assert len(library.starters()) >= 20


def test_shipped_text_uses_uk_spelling() -> None:
    us_spelling = re.compile(r"\b(organiz\w*|recogniz\w*|behavior\w*|color\w*|center|program)\b", re.IGNORECASE)
    texts = [p.text for p in library.prompts()] + [s.text for s in library.starters()]
    texts += [t.description for t in library.themes()]
    assert [t for t in texts if us_spelling.search(t)] == []


def test_prompt_by_id_finds_a_prompt_and_names_a_missing_one() -> None:
    assert library.prompt_by_id("sii-what-went-well-today").kind == "safety-ii"
    with pytest.raises(
        KeyError, match=r"no prompt with id 'sii-what-went-well-todya'.*did you mean 'sii-what-went-well-today'"
    ):
        library.prompt_by_id("sii-what-went-well-todya")


def test_theme_by_id_finds_a_theme_and_names_a_missing_one() -> None:
    assert library.theme_by_id("sepsis").label == "Sepsis"
    with pytest.raises(KeyError, match="no theme with id 'zebra'"):
        library.theme_by_id("zebra")


def test_package_data_is_found_through_importlib_resources() -> None:
    root = importlib.resources.files("prompts")
    for name in ("prompts.toml", "themes.toml", "starters.toml"):
        assert root.joinpath(name).is_file(), name
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert "*.toml" in pyproject["tool"]["setuptools"]["package-data"]["prompts"]


def test_library_imports_only_the_standard_library() -> None:
    tree = ast.parse(Path(library.__file__).read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert {name.split(".")[0] for name in imported} - set(sys.stdlib_module_names) == set()


# --- validation ------------------------------------------------------------------------------------------------


def test_a_valid_file_loads_with_every_field(tmp_path: Path) -> None:
    toml = prompt_toml(text='"  What went well?\\n"') + prompt_toml(
        id='"vc-x"', kind='"value-creation"', cycle='"applied"', themes="[]"
    )
    loaded = load_prompts(write(tmp_path, toml), known_themes=TEST_THEMES)
    assert loaded == (
        Prompt("sii-ok", "What went well?", ("teamwork",), "safety-ii", None, None),
        Prompt("vc-x", "What went well?", (), "value-creation", "applied", None, source="library"),
    )


def test_the_message_names_the_file_the_entry_and_every_problem(tmp_path: Path) -> None:
    toml = prompt_toml() + prompt_toml(id='"Bad_Id"') + prompt_toml(id='"sii-third"', kind='"gossip"')
    path = write(tmp_path, toml)
    with pytest.raises(LibraryError) as caught:
        load_prompts(path, known_themes=TEST_THEMES)
    error = caught.value
    assert str(path) in str(error)
    assert "2 problems" in str(error)
    assert error.problems == (
        "[[prompt]] #2 (id 'Bad_Id'): id 'Bad_Id' must be kebab-case: lowercase letters and digits, single hyphens",
        "[[prompt]] #3 (id 'sii-third'): kind 'gossip' is not one of: " + ", ".join(KINDS),
    )


def test_duplicate_ids_are_rejected_naming_the_first_use(tmp_path: Path) -> None:
    message = problems_of(tmp_path, prompt_toml() + prompt_toml())
    assert "[[prompt]] #2 (id 'sii-ok'): duplicate id 'sii-ok' (first used by [[prompt]] #1 (id 'sii-ok'))" in message


@pytest.mark.parametrize(
    "bad_id", ["Caps", "under_score", "double--hyphen", "-leading", "trailing-", " padded", "new\\nline", ""]
)
def test_ids_must_be_kebab_case(tmp_path: Path, bad_id: str) -> None:
    message = problems_of(tmp_path, prompt_toml(id=f'"{bad_id}"'))
    assert ("must be kebab-case" in message) or ("'id' is empty" in message)


def test_a_missing_id_is_rejected(tmp_path: Path) -> None:
    assert "[[prompt]] #1: missing 'id'" in problems_of(tmp_path, prompt_toml(id="OMIT"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('""', "'text' is empty"),
        ('"   "', "'text' is empty"),
        ("OMIT", "missing 'text'"),
        ("42", "'text' must be a string, not int"),
    ],
)
def test_text_must_be_a_non_empty_string(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in problems_of(tmp_path, prompt_toml(text=text))


def test_text_may_be_280_characters_but_not_281(tmp_path: Path) -> None:
    load_prompts(write(tmp_path, prompt_toml(text=f'"{"a" * 280}"')), known_themes=TEST_THEMES)
    assert "'text' is 281 characters; the limit is 280" in problems_of(tmp_path, prompt_toml(text=f'"{"a" * 281}"'))


def test_unknown_themes_are_rejected_with_a_suggestion(tmp_path: Path) -> None:
    message = problems_of(tmp_path, prompt_toml(themes='["teamwrok", "astrology"]'))
    assert "unknown theme 'teamwrok' (did you mean 'teamwork'?)" in message
    assert "unknown theme 'astrology'" in message


def test_the_default_theme_check_uses_the_shipped_themes(tmp_path: Path) -> None:
    with pytest.raises(LibraryError, match="unknown theme 'astrology'"):
        load_prompts(write(tmp_path, prompt_toml(themes='["sepsis", "astrology"]')))


@pytest.mark.parametrize(
    ("themes", "expected"),
    [
        ('"teamwork"', "'themes' must be a list of theme ids"),
        ("[1]", "'themes' must be a list of theme ids"),
        ('["teamwork", "teamwork"]', "theme 'teamwork' is listed more than once"),
        ("OMIT", "missing 'themes'"),
    ],
)
def test_themes_must_be_a_list_of_distinct_ids(tmp_path: Path, themes: str, expected: str) -> None:
    assert expected in problems_of(tmp_path, prompt_toml(themes=themes))


def test_kind_must_be_known(tmp_path: Path) -> None:
    assert "kind 'safety-iii' is not one of" in problems_of(tmp_path, prompt_toml(kind='"safety-iii"'))
    assert "missing 'kind'" in problems_of(tmp_path, prompt_toml(kind="OMIT"))


def test_value_creation_prompts_need_a_valid_cycle(tmp_path: Path) -> None:
    assert "missing 'cycle'" in problems_of(tmp_path, prompt_toml(kind='"value-creation"'))
    message = problems_of(tmp_path, prompt_toml(kind='"value-creation"', cycle='"eventual"'))
    assert "cycle 'eventual' is not one of: immediate, potential, applied, realised, reframing" in message


def test_reflective_cycle_prompts_need_a_valid_stage(tmp_path: Path) -> None:
    assert "missing 'stage'" in problems_of(tmp_path, prompt_toml(kind='"reflective-cycle"'))
    message = problems_of(tmp_path, prompt_toml(kind='"reflective-cycle"', stage='"why"'))
    assert "stage 'why' is not one of: what, so-what, now-what" in message


def test_cycle_and_stage_are_rejected_on_other_kinds(tmp_path: Path) -> None:
    message = problems_of(tmp_path, prompt_toml(cycle='"applied"', stage='"what"'))
    assert "'cycle' applies only to value-creation prompts" in message
    assert "'stage' applies only to reflective-cycle prompts" in message


def test_unknown_keys_are_rejected(tmp_path: Path) -> None:
    message = problems_of(tmp_path, prompt_toml(theme='["teamwork"]'))
    assert "unknown key 'theme' (allowed: cycle, id, kind, stage, text, themes)" in message


def test_unknown_top_level_keys_and_an_empty_file_are_rejected(tmp_path: Path) -> None:
    message = problems_of(tmp_path, prompt_toml().replace("[[prompt]]", "[[prompts]]"))
    assert "unknown top-level key 'prompts' (expected only [[prompt]] entries)" in message
    assert "no [[prompt]] entries" in message


def test_invalid_toml_and_a_missing_file_name_the_file(tmp_path: Path) -> None:
    broken = write(tmp_path, 'id = "unterminated\n')
    with pytest.raises(LibraryError, match="(?s)" + re.escape(str(broken)) + ".*not valid TOML"):
        load_prompts(broken, known_themes=TEST_THEMES)
    with pytest.raises(LibraryError, match=r"(?s)absent\.toml.*cannot read the file"):
        load_prompts(tmp_path / "absent.toml", known_themes=TEST_THEMES)


def test_themes_are_validated(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[theme]]
        id = "falls"
        label = "Falls"
        description = "Preventing falls."

        [[theme]]
        id = "falls"
        label = ""
        colour = "red"
        """,
        "themes.toml",
    )
    with pytest.raises(LibraryError) as caught:
        load_themes(path)
    assert caught.value.problems == (
        "[[theme]] #2 (id 'falls'): unknown key 'colour' (allowed: description, id, label)",
        "[[theme]] #2 (id 'falls'): duplicate id 'falls' (first used by [[theme]] #1 (id 'falls'))",
        "[[theme]] #2 (id 'falls'): 'label' is empty",
        "[[theme]] #2 (id 'falls'): missing 'description'",
    )


def test_starters_are_validated(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
        [[starter]]
        id = "ok"
        text = "Hello?"

        [[starter]]
        id = "Too Long"
        text = "{"x" * 300}"
        """,
        "starters.toml",
    )
    with pytest.raises(LibraryError) as caught:
        load_starters(path)
    assert caught.value.problems == (
        "[[starter]] #2 (id 'Too Long'): id 'Too Long' must be kebab-case: "
        "lowercase letters and digits, single hyphens",
        "[[starter]] #2 (id 'Too Long'): 'text' is 300 characters; the limit is 280",
    )


# --- rotation --------------------------------------------------------------------------------------------------


def pool_of(size: int) -> list[Prompt]:
    return [Prompt(f"p-{n:02d}", f"Prompt {n}?", (), "safety-ii", None, None) for n in range(size)]


def run(pool: list[Prompt], steps: int, *, seed: int, history: list[str] | None = None) -> list[str]:
    history = list(history or [])
    for _ in range(steps):
        history.append(next_prompt(pool, history, seed=seed).id)
    return history


@settings(max_examples=150, deadline=None)
@given(size=st.integers(min_value=1, max_value=80), seed=st.integers(min_value=-(2**63), max_value=2**63))
def test_rotation_uses_every_prompt_once_per_cycle_and_never_repeats_back_to_back(size: int, seed: int) -> None:
    pool = pool_of(size)
    ids = sorted(p.id for p in pool)
    history = run(pool, 3 * size + 1, seed=seed)
    for start in range(0, 3 * size, size):
        assert sorted(history[start : start + size]) == ids
    if size >= 2:
        assert all(a != b for a, b in itertools.pairwise(history))


def test_rotation_is_deterministic_for_a_seed_and_varies_between_seeds() -> None:
    pool = pool_of(30)
    assert run(pool, 60, seed=7) == run(list(reversed(pool)), 60, seed=7)
    assert run(pool, 30, seed=7) != run(pool, 30, seed=8)


def test_each_cycle_has_its_own_order() -> None:
    history = run(pool_of(30), 60, seed=3)
    assert history[:30] != history[30:]


def test_a_prompt_added_mid_cycle_joins_the_current_cycle_and_unknown_ids_are_ignored() -> None:
    pool = pool_of(5)
    history = [*run(pool, 3, seed=1), "retired-prompt"]
    pool.append(Prompt("p-new", "New?", (), "safety-ii", None, None))
    rest = run(pool, 3, seed=1, history=history)[len(history) :]
    assert sorted(history[:3] + rest) == sorted(p.id for p in pool)


def test_a_pool_of_one_repeats_its_only_prompt() -> None:
    assert run(pool_of(1), 3, seed=0) == ["p-00"] * 3


def test_an_empty_pool_is_an_error() -> None:
    with pytest.raises(ValueError, match="empty pool"):
        next_prompt([], [], seed=0)
    with pytest.raises(ValueError, match="empty pool"):
        pick_starter([], seed=0)


def test_pick_starter_is_deterministic_whatever_the_pool_order() -> None:
    pool = [Starter(f"s-{n}", f"Starter {n}?") for n in range(20)]
    chosen = pick_starter(pool, seed=11)
    assert chosen in pool
    assert pick_starter(list(reversed(pool)), seed=11) == chosen
    assert len({pick_starter(pool, seed=seed) for seed in range(50)}) > 1
