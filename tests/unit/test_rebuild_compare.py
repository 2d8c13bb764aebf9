"""Row classification of the rebuild's validation (:class:`rdg_platform.lakehouse.spark.RowComparison`):
settled rows (no write after the cut on either side) must match; newer rows are in flight."""

from __future__ import annotations

from rdg_platform.lakehouse.spark import RowComparison

CUT = 1_000


def test_settled_equal_rows_count_and_digest() -> None:
    cmp = RowComparison(CUT)
    rows = {("a", ""): (5, 900), ("b", ""): (7, 1_000)}
    cmp.add("forward", rows, dict(rows))
    assert cmp.settled == {"forward": 2} and cmp.in_flight == {"forward": 0} and not cmp.mismatches
    assert cmp.digests["forward"] == (2, f"{12:032x}")


def test_rows_written_after_the_cut_on_either_side_are_in_flight() -> None:
    cmp = RowComparison(CUT)
    live = {("a", ""): (1, 900), ("b", ""): (2, 1_001), ("c", ""): (3, 500)}
    new = {("a", ""): (9, 1_500), ("b", ""): (2, 1_001), ("d", ""): (4, 2_000)}
    cmp.add("forward", live, new)
    # a: the replay has a newer write; b: written after the cut; d: only in the new version, newer;
    # c: only in the live version, settled -> missing in the new one.
    assert cmp.in_flight == {"forward": 3} and cmp.settled == {"forward": 1}
    assert cmp.mismatches == {("forward", "c", ""): (3, None)}


def test_settled_rows_that_differ_are_mismatches_and_accumulate_over_ranges() -> None:
    cmp = RowComparison(CUT)
    cmp.add("forward", {("a", "x"): (1, 10)}, {("a", "x"): (2, 10)})
    cmp.add("forward", {("b", ""): (3, 10)}, {("b", ""): (3, 10)})
    cmp.add("reverse", {}, {("x", "a"): (4, 10)})
    assert cmp.settled == {"forward": 2, "reverse": 1}
    assert cmp.mismatches == {("forward", "a", "x"): (1, 2), ("reverse", "x", "a"): (None, 4)}
    assert cmp.digests["forward"] == (2, f"{3:032x}")
