"""Reading what the authors' scripts print (ibci.report.authors_code), on logs written in their formats."""

import math

from ibci.report import authors_code


def ibci_log(init_acc: float, accs: list[float]) -> str:
    """src/main.py's output: the init test, then per epoch a train and a test block."""
    lines = ["alphas    [0, 1]", "[+] Finished intializing", "Test initialization",
             f"Testing set: Average loss: 0.0309, Accuracy: ({init_acc:.4f}%)", "Test initialization end"]
    for e, a in enumerate(accs):
        lines += ["Train_epoch\tTrain_loss\tTrain_acc", f"{e}\t0.003843\t88.9933",
                  "Test_epoch\tTest_loss\tTest_accuracy", f"{e}\t0.002440\t{a:.4f}"]
    return "\n".join(lines) + "\n"


def nsr_log(valid: list[float], test: list[float]) -> str:
    """fdnn_nsr.py's output: the test is printed only in epochs whose validation accuracy reaches its best."""
    lines = ["Testing set: Average loss: 0.0230, Accuracy: (9.8000%)", "Test initialization end"]
    best = -1.0
    for e, (v, t) in enumerate(zip(valid, test)):
        lines += ["Train_epoch\tcross_loss\tstable_loss", f"{e}\t0.1\t0.01", "Test_epoch\tvalid_loss\tvalid_accuracy",
                  f"0.0010\t{v:.4f}"]
        if best <= v:
            lines += ["Test_epoch\tTest_loss\tTest_accuracy", f"{e}\t0.0012\t{t:.4f}"]
        best = max(best, v)
    return "\n".join(lines) + "\n"


def test_the_results_are_read_as_each_script_reports_them(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    accs = [90.0 + e * 0.05 for e in range(101)]
    accs[60] = 99.0  # the best epoch: minimal error 1.00
    (logs / "ibci_d2_s1.log").write_text(ibci_log(6.61, accs))
    (logs / "ibci_d2_s2.log").write_text(ibci_log(20.0, accs[:50]))  # cut off at 50 epochs: left out
    valid = [97.0] * 100
    valid[40], valid[70] = 98.0, 98.0  # a tie moves to the later epoch, as the code's `<=` does
    test = [97.5] * 100
    test[40], test[70] = 98.3, 98.1
    (logs / "nsr_mlp4_s3.log").write_text(nsr_log(valid, test))
    (logs / "ibci0_d2_s1.log").write_text(ibci_log(6.61, [93.0]))
    (logs / "notes.txt").write_text("not a log")
    found = authors_code.read_logs(logs)
    assert set(found) == {"ibci_d2", "nsr_mlp4", "ibci0_d2"}
    assert list(found["ibci_d2"]) == [1] and math.isclose(found["ibci_d2"][1], 1.0)
    assert math.isclose(found["nsr_mlp4"][3], 100 - 98.1)
    assert math.isclose(found["ibci0_d2"][1], 100 - 6.61)


def test_the_comparison_and_the_table():
    cmp = authors_code.compare([80.0, 82.0, 84.0, 86.0], [81.0, 83.0, 85.0, 87.0])
    assert math.isclose(cmp["diff"], -1.0) and cmp["ci"][0] < -1.0 < cmp["ci"][1] and 0 < cmp["p"] < 1
    rows = authors_code.summary_rows({"nsr_mlp10": {1: 1.9, 2: 2.1, 3: 2.0}}, {"nsr_mlp10": 1.72})
    text = authors_code.to_markdown(rows, dict(cmp, their_seeds="1-4", our_seeds="0-3"), "init=ibci")
    assert "| fdnn_nsr.py (NSR) | MLP-10 |" in text and "| 1-3 |" in text and "2.00 ± 0.10 (n = 3)" in text
    assert "| 1.72 |" in text and "difference -1.00 points" in text
    assert authors_code.seed_ranges([1, 2, 3, 5, 7, 8]) == "1-3, 5, 7-8"
