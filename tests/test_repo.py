"""The repository keeps its promises: the README's test command is what CI runs."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_commands():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        return re.findall(r"```bash\n(.+?)\n```", f.read())


def test_readme_opens_with_a_train_command_and_a_test_command():
    train, test = readme_commands()[:2]
    assert "tfvae train --epochs 40" in train and "TFVAE_DATA_DIR=../shared/data" in train
    assert "pytest" in test


def test_ci_runs_exactly_the_readme_test_command():
    test_command = readme_commands()[1]
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as f:
        lines = [line.strip() for line in f]
    assert test_command in lines
