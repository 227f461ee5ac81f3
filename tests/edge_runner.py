"""Runs `tfvae ARGS` in a subprocess where TensorFlow, TFP, Keras and matplotlib cannot be imported (the edge path).

Shared by test_sample.py and test_own_images.py.
"""

import json
import subprocess
import sys

# Runs `tfvae ARGS` with TensorFlow, TFP, Keras and matplotlib made unimportable; prints what was attempted.
BLOCKING_RUNNER = r"""
import importlib.abc, json, sys

BLOCKED = ("tensorflow", "tensorflow_probability", "tf_keras", "keras", "matplotlib")
attempted = []

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            attempted.append(name)
            raise ImportError(f"{name} is blocked: the .tflite path must not import it")
        return None

sys.meta_path.insert(0, Block())
from tfvae.cli.main import cli

try:
    cli(sys.argv[1:], prog_name="tfvae")
    code = 0
except SystemExit as e:
    code = e.code
loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
print(json.dumps({"code": code, "attempted": attempted, "loaded": loaded}))
"""


def run_blocked(args, cwd) -> tuple:
    """(report, completed process) of `tfvae ARGS` with the heavy imports blocked; report = {code, attempted, loaded}."""
    result = subprocess.run([sys.executable, "-c", BLOCKING_RUNNER, *args], capture_output=True, text=True,
                            timeout=120, cwd=cwd)
    return json.loads(result.stdout.strip().splitlines()[-1]), result
