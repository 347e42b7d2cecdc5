"""The SLURM tests (marker `cluster`), run by `make test-cluster` against the cluster `scripts/cluster.sh up` starts.

They are left out of every run that does not ask for them with `-m cluster` (`make test`, `make test-slow`,
a plain `pytest`): they need a SLURM cluster, root to start one, and a few minutes.
"""


MARKER = "cluster"


def pytest_configure(config):
    config.addinivalue_line("markers", f"{MARKER}: needs a SLURM cluster (scripts/cluster.sh up); run with "
                                       "`make test-cluster`, never part of `make test`")


def pytest_collection_modifyitems(config, items):
    if MARKER in (config.option.markexpr or ""):
        return  # -m names the marker: pytest's own selection decides
    left_out = [item for item in items if item.get_closest_marker(MARKER)]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if not item.get_closest_marker(MARKER)]
