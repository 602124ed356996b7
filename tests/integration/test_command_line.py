"""`python -m snfs.train` with a mistyped key, group or option: one line with a "did you mean", before torch loads.

Hydra's own reports of these take 7-23 lines (its config search path, the advice to add the key with `+`,
which then fails too); snfs.command_line checks the command line first (issue 26, findings 5 and 9).
"""

from __future__ import annotations

import os
import subprocess
import sys

from support import REPO


def test_the_cli_says_it_in_one_line_without_importing_torch(tmp_path):
    """The check runs before `import torch` (which alone takes seconds on a busy 2-core machine)."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "snfs.train", "densty=0.02"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
    assert (
        lines == [lines[0]]
        and lines[0].startswith("error: densty is not a key")
        and "did you mean density?" in lines[0]
    )
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "torch" not in imported
