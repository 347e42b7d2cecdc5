"""ibci.load_cells / ibci.load_runs: finished runs as frames, from the records alone."""

import json
from pathlib import Path

import ibci
from ibci.runs import runner


def test_frames_from_records_and_an_older_record_still_loads(small_cfg):
    cfgs = [small_cfg("init=vanilla", "depth=5"), small_cfg("init=ibci", "depth=5")]
    recs = runner.run_cells(cfgs, stack_cells=2, log=lambda line: None)
    results = Path(cfgs[0]["results_dir"])
    # A record from before `net` and `reg` existed: its cell keys lack them.
    path = results / "runs" / recs[0]["cell_id"] / "record.json"
    old = json.loads(path.read_text())
    del old["cell"]["net"], old["cell"]["reg"]
    path.write_text(json.dumps(old))

    cells = ibci.load_cells(results)
    assert len(cells) == 4 and set(cells["init"]) == {"vanilla", "ibci"}
    assert (cells["net"] == "d5").all() and (cells["reg"] == "none").all()  # the old record's at its run's values
    assert set(cells["status"]) <= {"ok", "failed", "diverged"}
    assert (cells["budget_seeds"] == 2).all()
    runs = ibci.load_runs(results)
    assert len(runs) == 2 * 2 * (cfgs[0]["epochs"] + 1)  # cells x seeds x (epochs + the init)
    assert list(runs.columns[:3]) == ["cell_id", "base", "init"] and "test_error" in runs
    first = runs[(runs["init"] == "ibci") & (runs["epoch"] == 0)].sort_values("seed")["test_error"].tolist()
    assert first == [round(s["epoch0_error"], 4) for s in recs[1]["seeds"]]  # metrics.csv keeps 6 digits
