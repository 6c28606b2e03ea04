"""The arithmetic of placement: rank clusters, fit a replica count into them, propose a move.

Pure functions over plain dicts (cluster id -> replicas). ``placement.py`` owns the state
and decides *when* these run; this module only knows *where* replicas fit best.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from control_plane.domain.clusters import Cluster, ClusterKind

# A region with no recorded demand still gets this share, so spreading has somewhere to go.
_DEMAND_FLOOR = 0.05

Tier = tuple[int, int, float, int]


@dataclass(frozen=True)
class Candidate:
    """A cluster the deployment may use this tick, with what fits there."""

    cluster_id: str
    tier: Tier  # lower is preferred; equal tiers share load
    weight: float  # share of the deployment's demand near this cluster (1.0 without data)
    room: int  # replicas that may be placed here in total (its current ones included)


def tiers(clusters: Sequence[Cluster]) -> dict[str, Tier]:
    """Preference tiers: self-hosted first, then each one's spill-over target, then the rest
    by priority and cost. Clusters in the same tier are filled evenly."""
    by_id = {c.id: c for c in clusters}
    result: dict[str, Tier] = {}
    for c in clusters:
        if c.kind == ClusterKind.SELF_HOSTED:
            result[c.id] = (0, c.priority, c.gpu_hour_cost, 0)
    for c in clusters:
        if c.kind == ClusterKind.SELF_HOSTED and c.spill_over_to in by_id:
            target = c.spill_over_to
            if target not in result:
                result[target] = (0, c.priority, c.gpu_hour_cost, 1)
    for c in clusters:
        result.setdefault(c.id, (1, c.priority, c.gpu_hour_cost, 0))
    return result


def demand_weights(
    clusters: Sequence[Cluster], demand_by_region: Mapping[str, float]
) -> dict[str, float]:
    """Each cluster's share of the demand of its region (split among the region's clusters)."""
    if not demand_by_region:
        return {c.id: 1.0 for c in clusters}
    total = sum(max(0.0, v) for v in demand_by_region.values()) or 1.0
    per_region: dict[str, int] = {}
    for c in clusters:
        per_region[c.region] = per_region.get(c.region, 0) + 1
    return {
        c.id: max(_DEMAND_FLOOR, max(0.0, demand_by_region.get(c.region, 0.0)) / total)
        / per_region[c.region]
        for c in clusters
    }


def _add_key(cand: Candidate, count: int) -> tuple[Tier, float, str]:
    return (cand.tier, (count + 1) / cand.weight, cand.cluster_id)


def _remove_key(cand: Candidate, count: int) -> tuple[Tier, float, str]:
    return (cand.tier, count / cand.weight, cand.cluster_id)


def fit(
    current: Mapping[str, int], desired: int, candidates: Sequence[Candidate], spread: int
) -> dict[str, int]:
    """Change ``current`` as little as possible so it sums to ``desired`` (or as close as
    room allows) over at least ``spread`` clusters where room allows."""
    by_id = {c.cluster_id: c for c in candidates}
    counts = {
        cid: min(n, by_id[cid].room)
        for cid, n in current.items()
        if cid in by_id and min(n, by_id[cid].room) > 0
    }
    while sum(counts.values()) > desired:
        _remove_one(counts, by_id, spread)
    while sum(counts.values()) < desired:
        if not _add_one(counts, candidates, spread):
            break
    return counts


def _used(counts: Mapping[str, int]) -> int:
    return sum(1 for n in counts.values() if n > 0)


def _remove_one(counts: dict[str, int], by_id: Mapping[str, Candidate], spread: int) -> None:
    present = [cid for cid, n in counts.items() if n > 0]
    # Keep a cluster's last replica while the spread needs it, unless nothing else is left.
    keep_last = _used(counts) <= spread
    choices = [cid for cid in present if not (keep_last and counts[cid] == 1)] or present
    worst = max(choices, key=lambda cid: _remove_key(by_id[cid], counts[cid]))
    counts[worst] -= 1
    if counts[worst] == 0:
        del counts[worst]


def _add_one(counts: dict[str, int], candidates: Sequence[Candidate], spread: int) -> bool:
    with_room = [c for c in candidates if counts.get(c.cluster_id, 0) < c.room]
    if not with_room:
        return False
    unused = [c for c in with_room if counts.get(c.cluster_id, 0) == 0]
    if _used(counts) < spread and unused:
        best = min(unused, key=lambda c: (c.tier, -c.weight, c.cluster_id))
    else:
        best = min(with_room, key=lambda c: _add_key(c, counts.get(c.cluster_id, 0)))
    counts[best.cluster_id] = counts.get(best.cluster_id, 0) + 1
    return True


def propose_move(
    counts: Mapping[str, int], candidates: Sequence[Candidate], spread: int
) -> tuple[str, str] | None:
    """One replica move (from, to) with a cause, else None. Causes: the spread is short of
    ``spread`` clusters although another has room, or a better tier has room while a worse
    tier holds replicas (a recovered self-hosted or cheaper cluster takes its load back)."""
    by_id = {c.cluster_id: c for c in candidates}
    present = [cid for cid, n in counts.items() if n > 0 and cid in by_id]
    if not present:
        return None
    with_room = [c for c in candidates if counts.get(c.cluster_id, 0) < c.room]
    unused = [c for c in with_room if counts.get(c.cluster_id, 0) == 0]
    if _used(counts) < spread and unused:
        donors = [cid for cid in present if counts[cid] >= 2]
        if donors:
            source = max(donors, key=lambda cid: _remove_key(by_id[cid], counts[cid]))
            target = min(unused, key=lambda c: (c.tier, -c.weight, c.cluster_id))
            return source, target.cluster_id
    if not with_room:
        return None
    target = min(with_room, key=lambda c: _add_key(c, counts.get(c.cluster_id, 0)))
    sources = [cid for cid in present if by_id[cid].tier > target.tier]
    if not sources:
        return None
    source = max(sources, key=lambda cid: _remove_key(by_id[cid], counts[cid]))
    leaves_cluster = counts[source] == 1 and counts.get(target.cluster_id, 0) > 0
    if leaves_cluster and _used(counts) - 1 < spread:
        return None
    return source, target.cluster_id
