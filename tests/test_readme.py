"""The README's first two lines are the two commands, and its Python example runs."""

import re

from conftest import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()


def test_readme_starts_with_the_two_commands() -> None:
    assert README.startswith("```\nmake run\nmake test\n```\n")


def test_readme_python_examples_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert blocks, "README has no python example"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
