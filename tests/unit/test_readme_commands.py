"""The README's commands run as printed: every `make` target exists, every `python -m snfs.train` command
line passes the command-line check, the CPU recipe pins what pyproject.toml pins and comes before the
first `make install` (issue 26, findings 3, 5 and 8). CI runs it with the unit tier (`make test`)."""

from __future__ import annotations

import re
import shlex
import subprocess

import pytest
from support import REPO

DOCS = ("README.md", "docs/dashboard.md", "docs/runs.md")


def bash_lines(path: str) -> list[str]:
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", (REPO / path).read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            code = line.split(" #", 1)[0].strip() if not line.lstrip().startswith("#") else ""
            if code:
                lines.append(code)
    return lines


def commands(kind: str) -> list[tuple[str, str]]:
    out = []
    for path in DOCS:
        for line in bash_lines(path):
            for part in line.split("&&"):
                words = shlex.split(part)
                if words and (words[0] == kind or (kind == "snfs.train" and "snfs.train" in words)):
                    out.append((path, part.strip()))
    return out


@pytest.mark.parametrize("path, line", commands("make"), ids=lambda v: v if " " in str(v) else None)
def test_every_make_command_names_real_targets(path, line):
    words = shlex.split(line)[1:]
    done = subprocess.run(["make", "-n", *words], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{path}: `{line}`: {done.stderr.strip()}"
    for word in words:
        if word.startswith("ARGS="):
            from snfs.command_line import check_overrides

            check_overrides(shlex.split(word[len("ARGS=") :]))


@pytest.mark.parametrize("path, line", commands("snfs.train"), ids=lambda v: v if " " in str(v) else None)
def test_every_training_command_passes_the_command_line_check(path, line):
    from snfs.command_line import check_overrides

    words = shlex.split(line)
    check_overrides(words[words.index("snfs.train") + 1 :])


def test_the_cpu_recipe_pins_what_pyproject_pins_and_comes_first():
    readme = bash_lines("README.md")
    pip = next(line for line in readme if "--index-url https://download.pytorch.org/whl/cpu" in line)
    pyproject = (REPO / "pyproject.toml").read_text()
    for pin in re.findall(r"(torch(?:vision)?==[\d.]+)", pip):
        assert f'"{pin}"' in pyproject, f"README's CPU recipe installs {pin}, pyproject.toml pins another version"
    assert readme.index(pip) < readme.index("make install"), "a CPU user would install the CUDA wheels first"
    assert readme.index("make install") < readme.index("make train")


def test_a_screenshot_command_waits_for_the_page():
    """Without a virtual time budget headless Chromium captures the dashboard's "Loading..." placeholder."""
    shots = [line for path in DOCS for line in bash_lines(path) if "--screenshot" in line]
    assert shots
    assert all("--virtual-time-budget=" in line for line in shots), shots
