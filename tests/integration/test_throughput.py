"""benchmarks/throughput.py runs the real training step and reports a positive rate and the mask update."""

import importlib.util
import json
import sys

from support import REPO


def load_script():
    spec = importlib.util.spec_from_file_location("throughput", REPO / "benchmarks" / "throughput.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_throughput_prints_one_json_line_per_setting(capsys, monkeypatch):
    script = load_script()
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "throughput.py",
            "--model",
            "lenet300_100",
            "--shape",
            "1",
            "28",
            "28",
            "--sparse",
            "momentum",
            "dense",
            "--steps",
            "2",
            "--epochs",
            "2",
            "--batch-size",
            "16",
            "--device",
            "cpu",
        ],
    )
    script.main()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [(r["model"], r["sparse"]) for r in lines] == [("lenet300_100", "momentum"), ("lenet300_100", "dense")]
    assert all(r["images_per_s"] > 0 and r["epochs_timed"] == 1 for r in lines)
    assert abs(lines[0]["density"] - 0.05) < 1e-3 and lines[1]["density"] == 1.0
