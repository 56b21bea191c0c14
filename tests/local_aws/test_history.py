"""The item history against a naive replay of the same writes (property-based)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from local_aws.history import TableHistory

KEYS = ["a", "b", "c"]
writes = st.lists(
    st.tuples(
        st.integers(0, 20),  # time step (0: same microsecond as the previous write)
        st.sampled_from(KEYS),
        st.one_of(st.none(), st.integers(0, 3)),  # None: delete, else a value
    ),
    max_size=30,
)


def replay(history: list[tuple[int, str, int | None]], until: int, inclusive: bool) -> dict:
    state: dict[str, int | None] = {}
    for time, pk, value in history:
        if time < until or (inclusive and time == until):
            state[pk] = value
    return {pk: value for pk, value in state.items() if value is not None}


@settings(max_examples=200, deadline=None)
@given(writes, st.integers(0, 700), st.integers(1, 200))
def test_state_and_changes_match_a_replay(steps, start, length):
    table = TableHistory("arn:aws:dynamodb:us-east-1:1:table/t", "t", ("pk",))
    applied: list[tuple[int, str, int | None]] = []
    current: dict[str, int | None] = {}
    now = 0
    for step, pk, value in steps:
        now += step
        image = None if value is None else {"pk": {"S": pk}, "v": {"N": str(value)}}
        table.record({"pk": {"S": pk}}, image, now)
        # A write that changes nothing is no change (DynamoDB Streams record none either).
        if current.get(pk) != value:
            applied.append((now, pk, value))
            current[pk] = value

    for at in range(0, now + 2, 5):
        got = {i["pk"]["S"]: int(i["v"]["N"]) for i in table.state_at(at)}
        assert got == replay(applied, at, inclusive=True)

    end = start + length
    before, after = replay(applied, start, False), replay(applied, end, False)
    written = {pk for time, pk, _ in applied if start <= time < end}
    expected = {
        pk: (before.get(pk), after.get(pk))
        for pk in written
        if before.get(pk) is not None or after.get(pk) is not None
    }
    changes = {
        c.keys["pk"]["S"]: (
            c.old_image and int(c.old_image["v"]["N"]),
            c.new_image and int(c.new_image["v"]["N"]),
        )
        for c in table.changes_between(start, end)
    }
    # A key rewritten to its old value with no net change still appears, as a write happened.
    assert changes == expected
