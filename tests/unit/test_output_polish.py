"""What a run prints, and how it ends (issue 26, finding 10).

After the result line wandb printed about 35 lines (run history and summary); the validation error was
printed unrounded (3.3333333333333335); the dashboard showed epochs=3.0; two Ctrl-C 50 ms apart printed
a Python traceback while the process shut down.
"""

from __future__ import annotations

import json

from support import REPO


def test_the_dashboard_shows_integer_config_values_as_integers(tmp_path):
    from snfs.report.runlog import RunStores

    source = sorted((REPO / "results" / "runs").glob("mnist-lenet300_100-momentum-*.json"))[:3]
    for i, path in enumerate(source):
        record = json.loads(path.read_text())
        if i == 0:
            record["config"]["epochs"], record["run_id"] = 3, "three-epochs"
        (tmp_path / f"{record['run_id']}.json").write_text(json.dumps(record))
    runs = {r.run_id: r for r in RunStores([tmp_path]).refresh()}
    assert "epochs=3" in runs["three-epochs"].summary()["variant"]
    assert "epochs=3.0" not in runs["three-epochs"].summary()["variant"]
