"""outcomes.instruments: the registry (range, direction, MCID/MDC, source) and profile-added ones."""

from __future__ import annotations

import pytest

from outcomes.errors import OutcomesError, ProfileError
from outcomes.instruments import INSTRUMENTS, get_instrument, instrument_registry, make_instrument

#: Issue 11's additions: code -> (range, higher is better, MCID). MCIDs from the sources named in
#: the registry (Young 2009, Mintken 2009, Lyman 2018, HealthMeasures PROMIS).
ADDED = {"ndi": ((0, 50), False, 7.5), "quickdash": ((0, 100), False, 8),
         "koos_jr": ((0, 100), True, 14), "hoos_jr": ((0, 100), True, 18),
         "promis_pi": ((10, 90), False, 2), "functional_status": ((0, 100), True, 9)}


@pytest.mark.parametrize("code", sorted(ADDED))
def test_added_instruments_carry_range_direction_mcid_and_source(code):
    inst = get_instrument(code)
    (low, high), better, mcid = ADDED[code]
    assert (inst.low, inst.high, inst.higher_is_better, inst.mcid) == (low, high, better, mcid)
    assert inst.source.strip() and inst.in_range(low) and not inst.in_range(high + 1)


def test_every_registered_instrument_has_a_source_and_a_positive_mcid():
    for inst in INSTRUMENTS.values():
        assert inst.source and inst.mcid > 0 and inst.low < inst.high, inst.code


def test_a_profile_adds_an_instrument_without_code_changes():
    spec = {"name": "Berg Balance Scale", "low": 0, "high": 56, "higher_is_better": True,
            "mcid": 5, "mdc": 6.5, "source": "Donoghue & Stokes 2009"}
    registry = instrument_registry({"berg": spec})
    assert registry["berg"].range_text == "0-56" and registry["berg"].integer
    assert "berg" not in INSTRUMENTS  # the shipped registry is not changed
    with pytest.raises(OutcomesError, match="unknown instrument 'berg'"):
        get_instrument("berg")


@pytest.mark.parametrize("code, change, message", [
    ("Berg!", {}, "lower-case letters"),
    ("lefs", {}, "is a registered instrument"),
    ("berg", {"colour": "red"}, "unknown key"),
    ("berg", {"high": "lots"}, "must be numbers"),
    ("berg", {"low": 60}, "needs low < high"),
    ("berg", {"source": " "}, "and a source"),
])
def test_bad_instrument_definitions_name_the_problem(code, change, message):
    spec = {"name": "B", "low": 0, "high": 56, "higher_is_better": True, "mcid": 5,
            "source": "x", **change}
    with pytest.raises(ProfileError, match=message):
        make_instrument(code, spec)
