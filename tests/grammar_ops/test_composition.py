"""Property: the validator accepts exactly the well-typed compositions, and only ever raises
CompositionError."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grammar_ops import CompositionError, Kind, standard_catalog
from grammar_ops.capability_schema import example_config

CATALOG = standard_catalog()
NAMES = sorted(CATALOG.primitives)
STRUCTURAL = {"KIND_MISMATCH", "TOO_MANY_SIDE_EFFECTS", "SIDE_EFFECT_NOT_LAST"}


def expected_ok(names: list[str], input_kind: Kind | None) -> bool:
    """Well typed: some starting kind flows through every primitive; one side effect, last."""
    primitives = [CATALOG.primitives[n] for n in names]
    effects = [i for i, p in enumerate(primitives) if p.side_effect]
    if len(effects) > 1 or (effects and effects[0] != len(primitives) - 1):
        return False
    starts = list(Kind) if input_kind is None else [input_kind]
    for kind in starts:
        current: Kind | None = kind
        for primitive in primitives:
            if current not in primitive.accepts:
                current = None
                break
            current = primitive.produces or current
        if current is not None:
            return True
    return False


entries = st.lists(st.sampled_from(NAMES), min_size=1, max_size=6)
kinds = st.one_of(st.none(), st.sampled_from(list(Kind)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(names=entries, input_kind=kinds)
def test_validator_accepts_exactly_the_well_typed(names, input_kind):
    spec = [{"use": n, "with": example_config(CATALOG.primitives[n].Config)} for n in names]
    want = expected_ok(names, input_kind)
    try:
        composition = CATALOG.compose(spec, input_kind=input_kind)
    except CompositionError as error:
        assert not want, f"rejected a well-typed composition: {error}"
        assert {f.code for f in error.findings} <= STRUCTURAL
        return
    assert want, f"accepted an ill-typed composition: {names} from {input_kind}"
    assert composition.spec() == [
        {
            "use": n,
            "with": CATALOG.primitives[n].Config.model_validate(s["with"]).model_dump(mode="json"),
        }
        for n, s in zip(names, spec, strict=True)
    ]
    if input_kind is not None:
        assert isinstance(composition.output_kind(input_kind), Kind)


junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
entry = st.one_of(
    st.fixed_dictionaries({"use": st.sampled_from(NAMES), "with": junk}),
    st.fixed_dictionaries({"use": st.text(max_size=12)}),
    st.dictionaries(st.sampled_from(["use", "with", "extra"]), junk, max_size=3),
    junk,
)


@settings(max_examples=200, deadline=None)
@given(spec=st.lists(entry, max_size=5), input_kind=kinds)
def test_validator_never_crashes_on_junk(spec, input_kind):
    try:
        CATALOG.compose(spec, input_kind=input_kind)
    except CompositionError as error:
        assert error.findings and all(f.code and f.message for f in error.findings)


def test_findings_are_collected_not_first_only():
    try:
        CATALOG.compose(
            [
                {"use": "transform.filtr", "with": {}},
                {"use": "transform.filter", "with": {"where": "x ** 2"}},
                {"use": "llm.classify", "with": {"field": "t"}},
            ]
        )
    except CompositionError as error:
        codes = [f.code for f in error.findings]
        assert codes == ["UNKNOWN_PRIMITIVE", "INVALID_CONFIG", "INVALID_CONFIG"]
        assert "Did you mean `transform.filter`" in error.findings[0].message
    else:
        raise AssertionError("expected a CompositionError")
