"""Photo ids of a run: unique (case-blind, as macOS and Windows folders are), folder-safe and stable."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from cleftscore.run.inputs import photo_ids

#: File names that collide often: few letters, numbered suffixes like the ids themselves.
NAMES = st.lists(
    st.builds(lambda stem, n, ext: f"{stem}{n}{ext}", st.sampled_from(["a", "A", "b", "a-2", "a-3", "x y"]),
              st.sampled_from(["", "-2", "-3", "-2-2"]), st.sampled_from([".jpg", ".PNG"])),
    max_size=12,
)  # fmt: skip


def test_a_numbered_id_never_lands_on_a_name_given_before() -> None:
    assert photo_ids(["a-2.jpg", "a.jpg", "a.jpg"]) == ["a-2", "a", "a-3"]
    assert photo_ids(["a.jpg", "A.png", "a-2.jpg"]) == ["a", "A-2", "a-2-2"]


@given(NAMES)
def test_ids_are_unique_folder_safe_and_stable(names: list[str]) -> None:
    ids = photo_ids(names)
    assert len(ids) == len(names)
    assert len({i.lower() for i in ids}) == len(ids)
    assert all(re.fullmatch(r"[\w.-]+", i) and not i.startswith(".") for i in ids)
    # Each id is its file's stem, or the stem numbered; the first file of a free stem keeps it.
    for i, (name, pid) in enumerate(zip(names, ids, strict=True)):
        stem = photo_ids([name])[0]
        assert pid == stem or re.fullmatch(re.escape(stem) + r"-\d+", pid)
        if stem.lower() not in {earlier.lower() for earlier in ids[:i]}:
            assert pid == stem
    assert photo_ids(names) == ids
    # Adding photos at the end never renames the ones before.
    assert photo_ids([*names, "a.jpg", "a-2.jpg"])[: len(ids)] == ids
    assert photo_ids([Path(n) for n in names]) == ids
