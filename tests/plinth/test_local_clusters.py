"""`plinth up --clusters`: which local regions, and the records they register."""

from __future__ import annotations

from math import dist

import pytest

from plinth.exceptions import PlinthError
from plinth.local_clusters import REGIONS, LocalRegion, cluster_record, parse_clusters


def test_a_count_takes_the_first_regions() -> None:
    assert [r.cluster_id for r in parse_clusters("3")] == [
        "local-eu-west",
        "local-us-east",
        "local-us-west",
    ]


def test_a_list_names_the_regions() -> None:
    regions = parse_clusters("us-west, eu-central")
    assert [(r.name, r.residency) for r in regions] == [("us-west", "us"), ("eu-central", "eu")]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "give 1 to 6 clusters"),
        (str(len(REGIONS) + 1), "give 1 to 6 clusters"),
        ("eu-west,mars-1", "unknown region mars-1"),
        ("eu-west,eu-west", "names a region twice"),
        (",", "unknown region (none)"),
    ],
)
def test_bad_values_name_what_is_wrong(value: str, message: str) -> None:
    with pytest.raises(PlinthError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_clusters(value)


def test_regions_are_far_apart_as_the_real_ones() -> None:
    eu, us_east, us_west = parse_clusters("3")
    record = cluster_record(eu, "http://127.0.0.1:9001")
    assert record["labels"] == {"residency": "eu"}
    assert record["driver"] == {"kind": "local"}
    assert record["gateway_url"] == "http://127.0.0.1:9001"
    # London -> Virginia is closer than London -> Oregon: "nearest" has a meaning.
    assert dist(here(eu), here(us_east)) < dist(here(eu), here(us_west))


def here(region: LocalRegion) -> tuple[float, float]:
    return (region.latitude, region.longitude)
