"""The NSR verdict: the cells its claims need (`cells`), read from a spec (experiments/nsr_verdict.yaml).

C1 compares Vanilla with +NSR (the official lambda, logits) on each network
at n = 10; C3 searches each reading of "which layer" over a grid of lambdas
on the validation split, with seeds disjoint from the test seeds. Plain
functions over dicts; the entry points do the I/O.
"""

from __future__ import annotations

from ..errors import UserError


def test_cells(spec: dict, seeds: int) -> list[dict]:
    """C1's cells: Vanilla and +NSR per network and block of test seeds, blocks first (a resumed sweep
    finishes whole blocks)."""
    out = []
    for block in range(int(spec["test_blocks"])):
        for net in spec["networks"]:
            for method in ("vanilla", "nsr"):
                out.append(dict(claim="C1", network=net, method=method, reading="logits", lam=None,
                                seed_offset=block * seeds,
                                overrides=[*spec["recipe"], f"net={net}", f"method={method}",
                                           f"seed_offset={block * seeds}"]))
    return out


def search_cells(spec: dict) -> list[dict]:
    """C3's search: every (network, reading, lambda) on the search seeds, the deep networks first."""
    search = spec["search"]
    order = search.get("order", spec["networks"])
    if sorted(order) != sorted(spec["networks"]):
        raise UserError(f"search.order={order} must list the networks {spec['networks']}")
    out = []
    for net in order:
        for reading in search["readings"]:
            for lam in [*search["lambdas"], *(["official"] if reading == "logits" else [])]:
                overrides = [*spec["recipe"], f"net={net}", "method=nsr", f"reg.reading={reading}",
                             f"seed_offset={search['seed_offset']}", f"seeds={search['seeds']}"]
                if lam != "official":  # the network's own lambda is its config's (configs/net/)
                    overrides.append(f"reg.lambda={lam}")
                out.append(dict(claim="C3", network=net, method="nsr", reading=reading, lam=lam,
                                seed_offset=int(search["seed_offset"]), overrides=overrides))
    return out


def cells(spec: dict, seeds: int) -> list[dict]:
    """Every cell the verdict needs so far, in the order a sweep trains them: C1's test cells, then C3's search."""
    return [*test_cells(spec, seeds), *search_cells(spec)]
