"""The command line without surprises: Hydra's own flags, keys added with `+`, `--help` of every script.

Most checks call `run.check_command_line` and the scripts' `main` in this
process; a few run the real entry points in subprocesses (a second or two
each, more where torch loads), from an empty folder, so that a job started by
mistake would write its `results/` there and fail the test.
"""

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import run
from ibci.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
TINY_GRID = "grid:\n  base: [xavier]\n  depth: [2]\n  init: [vanilla, lsuv]\n"


def python(*args, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120)


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"script_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- Hydra's own flags


@pytest.mark.parametrize("args", [
    ["-sc", "install=bash"],  # install=bash is the flag's command, not an override
    ["--shell-completion", "uninstall=bash"],
    ["--info"],
    ["--info", "defaults"],
    ["-i", "config", "init=ibci"],
    ["--cfg", "job"],
    ["-c", "hydra", "-p", "hydra.run"],
    ["--cfg", "job", "--package", "init", "--resolve"],
    ["--help"],
    ["-h"],
    ["--hydra-help"],
    ["--cfg", "job", "+epoch=3"],  # shows the config it would run; trains nothing, so nothing to refuse
    ["-cn", "config", "init=ibci", "depth=3"],
    ["--config-path", "configs", "--config-name=config", "base=he"],
    ["-cd", "/nonexistent", "init=ibci"],  # a search path the check does not compose; Hydra reports it
    ["-r", "init=lsuv"],
])
def test_hydra_flags_and_their_values_pass_the_check(args):
    run.check_command_line(args)


@pytest.mark.parametrize("args, message", [
    (["-cn", "config", "init=foo"], "init=foo is not one of: ibci, iim, lsuv, tie, vanilla"),
    (["-cp", "configs", "+epoch=3"], "+epoch=3 adds a key the config does not have; did you mean epochs=3?"),
    (["-cn", "nope", "seeds=2"], "Cannot find primary config 'nope'"),
    (["-cp", "/nonexistent", "seeds=2"], "Primary config directory not found"),
])
def test_a_flag_naming_the_config_still_has_its_jobs_checked(args, message):
    with pytest.raises(UserError) as e:
        run.check_command_line(args)
    assert str(e.value).startswith(message)


def test_experimental_rerun_takes_a_file_not_an_override(tmp_path):
    pickle = tmp_path / "a=b" / "config.pickle"
    with pytest.raises(UserError, match=r"^--experimental-rerun .*/a=b/config.pickle: no such file"):
        run.check_command_line(["--experimental-rerun", str(pickle)])
    pickle.parent.mkdir()
    pickle.write_bytes(b"")
    run.check_command_line(["--experimental-rerun", str(pickle)])  # Hydra reruns the pickled config


def test_a_flag_after_an_override_is_one_line_once_the_overrides_are_checked():
    with pytest.raises(UserError, match="^init=foo is not one of"):
        run.check_command_line(["depth=2", "-m", "init=vanilla,foo"])
    with pytest.raises(UserError, match="^Hydra reads its flags before the overrides only; move -cn before depth=2$"):
        run.check_command_line(["depth=2", "-cn", "config", "init=lsuv"])
    with pytest.raises(UserError, match="^Hydra reads its flags before the overrides only; move -p before depth=2$"):
        run.check_command_line(["--cfg", "job", "depth=2", "-p", "init", "init=ibci"])
    run.check_command_line(["--cfg", "job", "init=ibci", "-p", "init"])  # Hydra reads this order


@pytest.mark.parametrize("args, stdout", [
    (["-sc", "install=bash"], "hydra_bash_completion"),
    (["--cfg", "job", "-p", "init", "init=ibci"], "# @package init\nname: ibci\n"),
    (["--info", "searchpath"], "Config search path"),
    (["--hydra-help"], "Hydra (1."),
])
def test_hydra_flags_print_and_train_nothing(args, stdout, tmp_path):
    out = python(ROOT / "run.py", *args, cwd=tmp_path)
    assert (out.returncode, out.stderr) == (0, ""), out.stderr
    assert stdout in out.stdout
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- keys added with + and ++


@pytest.mark.parametrize("args, message", [
    (["+epoch=3"], "+epoch=3 adds a key the config does not have; did you mean epochs=3?"),
    (["++epoch=3"], "++epoch=3 adds a key the config does not have; did you mean epochs=3?"),
    (["+seed=3"], "+seed=3 adds a key the config does not have; did you mean seeds=3?"),
    (["+data.limit=10"], "+data.limit=10 adds a key the config does not have; did you mean data.train_limit=10?"),
    (["init=ibci", "+init.pool_factr=2"],
     "+init.pool_factr=2 adds a key the config does not have; did you mean init.pool_factor=2?"),
    (["+foo=1"], "+foo=1 adds a key the config does not have; nothing reads it (`python run.py --cfg job` lists the keys)"),
    (["-m", "+experiment=table1"], "Multiple values for experiment"),  # a group now: `experiment=table1` selects it
    # the widths of a depth are data, not a setting to suggest
    (["+networks.4=[10,10,10]", "depth=4"], "+networks.4=[10,10,10] adds a key the config does not have; nothing"),
    # init.tol is LSUV's: under init=ibci nothing reads it, in every job of a sweep
    (["-m", "init=lsuv,ibci", "+init.tol=0.1"], "+init.tol=0.1 adds a key the config does not have; nothing"),
    (["+epochs=3"], "Could not append to config. An item is already at 'epochs'"),  # Hydra's own words
    (["~seeds"], "the config has no 'seeds', which a run needs (deleted with ~?)"),
])
def test_an_added_key_the_config_does_not_have_is_refused(args, message):
    with pytest.raises(UserError) as e:
        run.check_command_line(args)
    assert str(e.value).startswith(message)


@pytest.mark.parametrize("args", [
    ["++epochs=3"],
    ["init=lsuv", "++init.tol=0.01"],
    ["~stack_cells"],  # run.py does not need it
    ["epochs=3", "init=ibci", "init.pool_factor=2"],
    ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    ["+hydra.job.env_set.OMP_NUM_THREADS=1"],
    ["results_dir='/tmp/my runs é'"],
])
def test_overrides_deletions_groups_and_hydra_keys_still_pass(args):
    run.check_command_line(args)


def test_an_added_key_is_one_line_exit_2_and_trains_nothing(tmp_path):
    out = python(ROOT / "run.py", "profile=smoke", "+epoch=3", cwd=tmp_path)
    assert (out.returncode, out.stderr) == (2, "error: +epoch=3 adds a key the config does not have; "
                                               "did you mean epochs=3?\n")
    assert not list(tmp_path.iterdir())


def test_the_sweep_script_refuses_an_added_key_and_a_flag(tmp_path, capsys):
    sweep = load_script("sweep")
    grid = tmp_path / "tiny.yaml"
    grid.write_text(TINY_GRID)
    for argv, line in [
        ([grid, "profile=smoke", "+epoch=1"], "error: +epoch=1 adds a key the config does not have; did you mean epochs=1?"),
        ([grid, "-m", "init=ibci"], "error: -m is not an option of scripts/sweep.py (it takes an experiment and "
                                    "overrides; see --help)"),
    ]:
        with pytest.raises(SystemExit) as e:
            sweep.main([str(a) for a in argv] + [f"results_dir={tmp_path / 'results'}"])
        assert (e.value.code, capsys.readouterr().err) == (2, line + "\n")
    assert not (tmp_path / "results").exists()


def test_a_word_that_is_no_override_is_one_line():
    with pytest.raises(UserError, match="^table1 is not an override [(]key=value[)]; run a table's grid with "
                                        "python run.py -m experiment=table1$"):
        run.check_command_line(["table1", "profile=smoke"])
    with pytest.raises(UserError, match="^epochs is not an override [(]key=value[)]$"):
        run.check_command_line(["epochs", "3"])


def test_a_value_that_does_not_parse_says_how_to_quote_it():
    with pytest.raises(UserError, match=r"^LexerNoViableAltException: results_dir=/tmp/r.sultats .* quote a value "
                                        r"with non-ASCII or special characters, as in 'results_dir=\"/tmp/my runs\"'$"):
        run.check_command_line(["results_dir=/tmp/résultats"])


# --------------------------------------------------------------------------- before torch loads


@pytest.mark.parametrize("script, args, code", [
    ("run.py", ["init=foo"], 2),
    ("run.py", ["-m", "depth=2,4"], 2),
    ("run.py", ["init=ibci", "depth=3", "init.tie_weights=[0,1.5,1]"], 2),
    ("run.py", ["+seed=3", "epochs=0"], 2),
    ("run.py", ["--help"], 0),
    ("scripts/sweep.py", ["table1", "epochs=0"], 2),
    ("scripts/plot_campaign.py", ["--init", "foo"], 2),
    ("scripts/plot_campaign.py", ["--base", "uniform"], 2),
    ("scripts/plot_campaign.py", ["--help"], 0),
    ("scripts/make_tables.py", ["--help"], 0),
    ("scripts/make_verdict.py", ["-h"], 0),
    ("scripts/make_nsr_verdict.py", ["--help"], 0),
])
def test_a_mistake_or_help_is_answered_before_torch_loads(script, args, code):
    # torch (and pandas, for the report scripts) take most of a start-up (about 3 s here): a typo should not wait
    probe = textwrap.dedent(f"""
        import runpy, sys
        sys.argv = [{script!r}, *{args!r}]
        try:
            runpy.run_path({script!r}, run_name="__main__")
        except SystemExit as e:
            print(e.code, "torch" in sys.modules or "pandas" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.stdout.split()[-2:] == [str(code), "False"], out.stdout + out.stderr
    if code:
        assert out.stderr.startswith("error: ") and len(out.stderr.strip().splitlines()) == 1, out.stderr


# --------------------------------------------------------------------------- --help of every script


SCRIPTS = ["sweep", "make_verdict", "make_nsr_verdict", "make_tables", "bench", "prepare_data"]


def docstring_head(name: str) -> str:
    """The first paragraph of a script's docstring (its summary)."""
    text = (ROOT / "scripts" / f"{name}.py").read_text()
    return text.split('"""')[1].split("\n\n")[0]


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_script_answers_help_with_its_docstring(name):
    out = python(ROOT / "scripts" / f"{name}.py", "--help")
    assert (out.returncode, out.stderr) == (0, ""), out.stderr
    assert docstring_head(name) in out.stdout
    assert f"scripts/{name}.py" in out.stdout  # the usage examples, not only the summary


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_script_answers_h_too(name, capsys, monkeypatch):
    script = load_script(name)
    monkeypatch.setattr(sys, "argv", [f"{name}.py", "-h"])
    try:
        code = script.main(["-h"]) if name not in ("bench",) else script.main()
    except SystemExit as e:
        code = e.code
    assert code == 0
    assert f"scripts/{name}.py" in capsys.readouterr().out


# ---- experiments as Hydra overlays ----------------------------------------------------------------


def test_an_experiment_overlay_is_a_grid_its_cells_keep_their_ids():
    from ibci.runs import records
    from ibci.cli import compose_many
    from ibci.experiments import load_experiment

    spec = load_experiment("experiment=table3")
    assert spec["grid"] == {"net": ["mlp3", "mlp4", "mlp6", "mlp8", "mlp10"],
                            "method": ["vanilla", "nsr", "ibci", "ibci_nsr", "lsuv", "lsuv_nsr"]}
    assert spec["rows"] == ["net"] and spec["column"] == "method" and spec["paper"].endswith("table3.csv")
    # The overlay's recipe composes to the same cell as spelling it out; a command-line value still wins.
    overlay, spelled, mine = compose_many([["experiment=table3", "net=mlp4", "method=nsr"],
                                           ["lr=0.01", "protocol=heldout", "net=mlp4", "method=nsr"],
                                           ["experiment=table3", "net=mlp4", "method=nsr", "lr=0.1"]])
    assert records.cell_id(overlay) == records.cell_id(spelled) and "table" in overlay
    assert mine["lr"] == 0.1 and records.cell_id(mine) != records.cell_id(overlay)
    # Table 2 runs Vanilla's cells for its comparisons but prints only IBCI and its ablations.
    assert load_experiment("table2")["grid"]["init"] == ["ibci", "tie", "iim"]


def test_run_py_checks_every_cell_of_an_experiments_grid(monkeypatch):
    seen = []
    monkeypatch.setattr(run, "compose_many", lambda jobs, *a: seen.extend(jobs) or [])
    run.check_command_line(["-m", "experiment=table1", "depth=2", "profile=smoke"])
    cells = {tuple(sorted(o for o in job if o.split("=")[0] in ("base", "depth", "init"))) for job in seen}
    assert len(seen) == len(cells) == 2 * 3  # the command line's depth=2 replaces the grid's depths
    assert all("experiment=table1" in job and "depth=2" in job for job in seen)
    with pytest.raises(UserError, match="^experiment=table1 is a grid of cells; add -m"):
        run.check_command_line(["experiment=table1"])


def test_ctrl_c_in_hydras_code_waits_for_the_next_cell():
    """A Ctrl-C outside `interrupts_at_once` (Hydra's code between -m jobs) is held to the next cell's start;
    inside a cell it raises at once; a second Ctrl-C while one is held raises at once."""
    script = textwrap.dedent("""
        import os, signal, sys
        from ibci.cli import hold_interrupts, interrupts_at_once, interrupts_held, raise_if_interrupted
        hold_interrupts(at_once=False)
        os.kill(os.getpid(), signal.SIGINT)
        print("held")
        try:
            with interrupts_at_once():
                print("cell ran")
        except KeyboardInterrupt:
            print("raised at the cell's start")
        try:
            with interrupts_at_once():
                os.kill(os.getpid(), signal.SIGINT)
                print("not reached")
        except KeyboardInterrupt:
            print("raised in the cell")
        os.kill(os.getpid(), signal.SIGINT)
        try:
            os.kill(os.getpid(), signal.SIGINT)
            print("not reached")
        except KeyboardInterrupt:
            print("second raised")
        hold_interrupts(at_once=True)
        try:
            with interrupts_held():
                os.kill(os.getpid(), signal.SIGINT)
                print("composing went on")
        except KeyboardInterrupt:
            print("raised after composing")
        raise_if_interrupted()
        print("end")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n") == ["held", "raised at the cell's start", "raised in the cell", "second raised",
                                      "composing went on", "raised after composing", "end", ""]
