"""The language reference: docs/language.md and the README's table are what the schema generates,
and the schema documents every block, kind, field and call."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from sslspec.spec import reference, schema
from sslspec.spec.fields import FloatT, IntT, ListT


def _classes() -> list[tuple[str, type]]:
    """(label, class) of every block kind, sub-block and call of the language."""
    found = [
        (f"{b} {k or ''}".strip(), c) for b, (kinds, _) in schema.BLOCKS.items() for k, c in kinds.items()
    ]
    found += [(f"measure {{ {n} }}", c) for n, c in schema.SUBBLOCKS[schema.Measure].items()]
    found += [(n, c) for t in (schema.POLARITY, schema.ACTIVATION) for n, c in t.calls.items()]
    return found


def test_committed_reference_is_what_the_schema_generates() -> None:
    """docs/language.md and the README's language table equal the generator's output."""
    regenerate = f"regenerate with `{reference.COMMAND}` and review the diff"
    assert reference.LANGUAGE.read_text() == reference.language_md(), (
        f"docs/language.md is stale; {regenerate}"
    )
    readme = reference.README.read_text()
    assert readme == reference.readme_with_table(readme), (
        f"the README's language table is stale; {regenerate}"
    )


def test_check_mode_reports_a_stale_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--check` exits 1 and names the regenerate command when a file differs, 0 when none does."""
    stale = tmp_path / "language.md"
    stale.write_text("old\n")
    monkeypatch.setattr(reference, "LANGUAGE", stale)
    monkeypatch.setattr(reference, "ROOT", tmp_path)
    monkeypatch.setattr(reference, "README", tmp_path / "README.md")
    (tmp_path / "README.md").write_text(f"x\n{reference.TABLE_START}\n{reference.TABLE_END}\n")
    assert reference.main(["--check"]) == 1
    assert reference.COMMAND in capsys.readouterr().err
    assert reference.main(["--write"]) == 0
    assert reference.main(["--check"]) == 0
    assert stale.read_text() == reference.language_md()


def test_every_class_and_field_has_a_doc() -> None:
    """Each block kind, sub-block and call has a docstring, and each value field a one-line doc."""
    missing = [label for label, cls in _classes() if not (cls.__doc__ or "").strip()]
    missing += [
        f"{label}.{name}"
        for label, cls in _classes()
        for name, a in schema.value_fields(cls).items()
        if not a.metadata.get("doc") or "\n" in a.metadata["doc"]
    ]
    missing += [name for name in schema.TOP_FIELDS if not schema.TOP_DOCS.get(name)]
    assert missing == []


def test_the_reference_lists_every_block_kind_and_field() -> None:
    """Every block and kind has a heading and every field a row with its default."""
    text = reference.language_md()
    for block, (kinds, _) in schema.BLOCKS.items():
        assert f"## `{block}`" in text
        for kind, cls in kinds.items():
            if kind is not None:
                assert f"### `{block} {kind}`" in text
            for name, a in schema.value_fields(cls).items():
                assert f"| `{name}` | " in text and f"| `{reference.literal(a.default)}` |" in text
    for name in schema.SUBBLOCKS[schema.Measure]:
        assert f"#### `measure {{ {name} }}`" in text


@pytest.mark.parametrize(
    ("type_", "words"),
    [
        (IntT(ge=1), "integer ≥ 1"),
        (FloatT(ge=0, le=1), "number in [0, 1]"),
        (FloatT(ge=0, lt=1), "number in [0, 1)"),
        (FloatT(gt=0), "number > 0"),
        (FloatT(ge=-1), "number ≥ -1"),
        (ListT(FloatT(ge=0, lt=1), 2, 2), "list of 2 items, each: number in [0, 1)"),
        (schema.POLARITY, "a number, `uniform(low, high)` or `constant(value)`"),
    ],
)
def test_types_read_as_their_ranges(type_: object, words: str) -> None:
    """Bounds read as the interval the checker enforces (inclusive [ ], exclusive ( ))."""
    assert reference.describe(type_) == words


def test_defaults_read_as_spec_text() -> None:
    """Defaults are written as a spec would write them, calls with named arguments."""
    hltm = {a.name: a.default for a in attrs.fields(schema.HLTM)}
    assert reference.literal(hltm["polarity"]) == "uniform(low = 0.7, high = 1.0)"
    assert reference.literal(schema.Activation("leaky_relu", 0.2)) == "leaky_relu(slope = 0.2)"
    assert reference.literal((64, 64)) == "[64, 64]" and reference.literal(False) == "false"
