"""MetadataStore contract: every adapter in STORE_FACTORIES must pass these."""

from __future__ import annotations

import threading

import pytest

from control_plane.ports.store import ABSENT, INDEX_FIELD, MetadataStore, VersionConflict


def test_get_absent_is_none(metadata_store: MetadataStore) -> None:
    assert metadata_store.get("models", "nope") is None


def test_put_creates_version_one_and_round_trips_json(metadata_store: MetadataStore) -> None:
    value = {"name": "m", "n": 3, "f": 1.5, "ok": True, "none": None, "l": [1, {"a": "é"}]}
    assert metadata_store.put("models", "m1", value) == 1
    item = metadata_store.get("models", "m1")
    assert item is not None
    assert (item.key, item.version, item.value) == ("m1", 1, value)


def test_unconditional_put_bumps_version(metadata_store: MetadataStore) -> None:
    metadata_store.put("t", "k", {"v": 1})
    assert metadata_store.put("t", "k", {"v": 2}) == 2
    item = metadata_store.get("t", "k")
    assert item is not None and item.value == {"v": 2} and item.version == 2


def test_absent_only_creates(metadata_store: MetadataStore) -> None:
    assert metadata_store.put("t", "k", {"v": 1}, expected_version=ABSENT) == 1
    with pytest.raises(VersionConflict) as info:
        metadata_store.put("t", "k", {"v": 2}, expected_version=ABSENT)
    assert (info.value.table, info.value.key) == ("t", "k")
    item = metadata_store.get("t", "k")
    assert item is not None and item.value == {"v": 1}


def test_expected_version_must_match(metadata_store: MetadataStore) -> None:
    metadata_store.put("t", "k", {"v": 1})
    assert metadata_store.put("t", "k", {"v": 2}, expected_version=1) == 2
    with pytest.raises(VersionConflict):
        metadata_store.put("t", "k", {"v": 3}, expected_version=1)
    with pytest.raises(VersionConflict):
        metadata_store.put("t", "missing", {"v": 3}, expected_version=1)
    item = metadata_store.get("t", "k")
    assert item is not None and item.version == 2 and item.value == {"v": 2}
    assert metadata_store.get("t", "missing") is None


def test_delete(metadata_store: MetadataStore) -> None:
    metadata_store.put("t", "k", {"v": 1})
    metadata_store.put("t", "k", {"v": 2})
    with pytest.raises(VersionConflict):
        metadata_store.delete("t", "k", expected_version=1)
    assert metadata_store.get("t", "k") is not None
    metadata_store.delete("t", "k", expected_version=2)
    assert metadata_store.get("t", "k") is None
    metadata_store.delete("t", "k")  # absent: no error
    with pytest.raises(VersionConflict):
        metadata_store.delete("t", "k", expected_version=2)
    # After a delete the key can be created again from scratch.
    assert metadata_store.put("t", "k", {"v": 9}, expected_version=ABSENT) == 1


def test_scan_prefix_ordered_and_per_table(metadata_store: MetadataStore) -> None:
    for key in ["dep/b", "dep/a", "dep/c", "model/x", "de"]:
        metadata_store.put("t", key, {"k": key})
    metadata_store.put("other", "dep/z", {"k": "z"})
    assert [i.key for i in metadata_store.scan("t", prefix="dep/")] == ["dep/a", "dep/b", "dep/c"]
    assert [i.key for i in metadata_store.scan("t")] == ["de", "dep/a", "dep/b", "dep/c", "model/x"]
    assert metadata_store.scan("t", prefix="zzz") == []
    assert [i.value for i in metadata_store.scan("other")] == [{"k": "z"}]


def test_prefix_with_like_wildcards_is_literal(metadata_store: MetadataStore) -> None:
    metadata_store.put("t", "a%b", {})
    metadata_store.put("t", "a_c", {})
    metadata_store.put("t", "axb", {})
    assert [i.key for i in metadata_store.scan("t", prefix="a%")] == ["a%b"]
    assert [i.key for i in metadata_store.scan("t", prefix="a_")] == ["a_c"]


def test_find_reads_by_index_prefix_and_follows_every_write(metadata_store: MetadataStore) -> None:
    """The index entry is written with the document (each write path), dropped with it,
    per table, literal (no wildcards), ordered by entry."""
    put = metadata_store.put
    put("t", "r1", {INDEX_FIELD: "QUEUED/m/d1/", "n": 1}, expected_version=ABSENT)
    put("t", "r2", {INDEX_FIELD: "QUEUED/m/d2/", "n": 2})
    put("t", "r3", {INDEX_FIELD: "QUEUED/m/d1/", "n": 3})
    put("t", "plain", {"n": 4})
    put("other", "r9", {INDEX_FIELD: "QUEUED/m/d1/"})
    put("t", "pct", {INDEX_FIELD: "QUEUED/m/d%/"})
    assert sorted(i.key for i in metadata_store.find("t", "QUEUED/m/d1/")) == ["r1", "r3"]
    assert len(metadata_store.find("t", "QUEUED/")) == 4
    assert [i.key for i in metadata_store.find("t", "QUEUED/m/d%")] == ["pct"]
    item = metadata_store.get("t", "r1")
    assert item is not None
    # A conditional write moves the entry; an unconditional one without the field drops it.
    moved = {INDEX_FIELD: "IN_PROGRESS/m/d1/", "n": 1}
    put("t", "r1", moved, expected_version=item.version)
    put("t", "r3", {"n": 3})
    assert metadata_store.find("t", "QUEUED/m/d1/") == []
    assert [i.value for i in metadata_store.find("t", "IN_PROGRESS/")] == [moved]
    metadata_store.delete("t", "r1")
    assert metadata_store.find("t", "IN_PROGRESS/") == []
    with pytest.raises((TypeError, ValueError)):
        put("t", "bad", {INDEX_FIELD: 7})


def test_non_json_value_is_rejected(metadata_store: MetadataStore) -> None:
    with pytest.raises((TypeError, ValueError)):
        metadata_store.put("t", "k", {"bad": object()})
    assert metadata_store.get("t", "k") is None


def test_threads_racing_increment_lose_no_update(metadata_store: MetadataStore) -> None:
    metadata_store.put("t", "counter", {"n": 0})
    per_thread = 25

    def bump() -> None:
        done = 0
        while done < per_thread:
            item = metadata_store.get("t", "counter")
            assert item is not None
            try:
                metadata_store.put(
                    "t", "counter", {"n": item.value["n"] + 1}, expected_version=item.version
                )
                done += 1
            except VersionConflict:
                continue

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    item = metadata_store.get("t", "counter")
    assert item is not None
    assert item.value == {"n": 4 * per_thread}
    assert item.version == 4 * per_thread + 1
