"""The documentation runs: the scripts of docs/examples/ at tiny sizes, and the doctests of the public modules."""

import doctest
import importlib
import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "docs", "examples")

# The modules behind the public names of issue 27 (tfvae.VAE, load_model, load_images, evaluate, export, train).
DOCTEST_MODULES = ["tfvae", "tfvae.saving", "tfvae.models.vae", "tfvae.evaluate", "tfvae.export", "tfvae.train",
                   "tfvae.datasets"]
SKIPPED_EXAMPLES = {"tfvae.export"}  # its examples convert TFLite files (+SKIP); tests/test_python_evaluate_export.py


def run_example(name, out, data_dir):
    """Runs docs/examples/NAME with --tiny in a fresh process, as a user would; returns its stdout."""
    environment = dict(os.environ, TFVAE_DATA_DIR=data_dir, PYTHONHASHSEED="0")
    result = subprocess.run([sys.executable, os.path.join(EXAMPLES, name), "--tiny", "--out", str(out)],
                            capture_output=True, text=True, timeout=900, cwd=str(out.parent), env=environment)
    assert result.returncode == 0, f"{name} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result.stdout


@pytest.mark.slow
def test_train_on_arrays_goes_from_an_array_to_a_tflite_sample(tmp_path, synthetic_data_dir):
    out = tmp_path / "out"
    stdout = run_example("train_on_arrays.py", out, synthetic_data_dir)

    for name in ("model.keras", "evaluation.json", "samples.png", "export/decoder.tflite", "export/manifest.json"):
        assert (out / name).is_file(), f"{name} missing; stdout:\n{stdout}"
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["log_likelihood"] < 0 and evaluation["elbo"] <= evaluation["log_likelihood"] + 1.0
    assert "tfvae sample --model" in stdout


@pytest.mark.slow
def test_own_networks_train_save_reload_and_compare(tmp_path, synthetic_data_dir):
    out = tmp_path / "out"
    stdout = run_example("own_networks.py", out, synthetic_data_dir)

    for name in ("own.keras", "builtin.keras", "comparison.json", "own_samples.png"):
        assert (out / name).is_file(), f"{name} missing; stdout:\n{stdout}"
    comparison = json.loads((out / "comparison.json").read_text())
    assert set(comparison) == {"own", "builtin"}
    assert all(row["log_likelihood"] < 0 for row in comparison.values())


def test_examples_take_tiny_and_out_and_have_a_docstring():
    """Each script is one a user can copy: a module docstring that says how to run it, --tiny and --out."""
    scripts = sorted(name for name in os.listdir(EXAMPLES) if name.endswith(".py"))
    assert {"train_on_arrays.py", "own_networks.py"} <= set(scripts)
    for name in scripts:
        with open(os.path.join(EXAMPLES, name), encoding="utf-8") as f:
            source = f.read()
        assert source.startswith('"""'), name
        assert "--tiny" in source and "--out" in source and "TFVAE_EXAMPLE_TINY" in source, name


@pytest.mark.parametrize("module_name", DOCTEST_MODULES)
def test_doctests_of_the_public_modules_pass(module_name, tmp_path, monkeypatch):
    """The `Example:` of every public function runs; examples that need real data or a run say `+SKIP`."""
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} doctest examples of {module_name} failed (output above)"
    assert result.attempted > 0 or module_name in SKIPPED_EXAMPLES, f"{module_name} has no example that runs"


# --------------------------------------------------------------------------- the documentation's links

DOCUMENTS = ["README.md", "BENCHMARKS.md"] + sorted(
    os.path.join("docs", name) for name in os.listdir(os.path.join(ROOT, "docs")) if name.endswith(".md"))
LINK = re.compile(r"\]\(([^)\s]+)\)")


def github_anchor(heading):
    """The id GitHub gives a heading: lower case, punctuation but '-' and '_' dropped, spaces to '-'."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path):
    with open(path, encoding="utf-8") as f:
        text = re.sub(r"```.*?```", "", f.read(), flags=re.S)
    return {github_anchor(line.lstrip("#")) for line in text.splitlines() if re.match(r"#{1,6} ", line)}


def test_readme_is_read_in_a_minute():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        lines = f.read().splitlines()
    assert len(lines) < 150
    for heading in ("## From Python", "## From the command line"):
        assert heading in lines


@pytest.mark.parametrize("document", DOCUMENTS)
def test_relative_links_resolve(document):
    """Every link to a file of the repository names one that exists, and every #anchor a heading in it."""
    path = os.path.join(ROOT, document)
    with open(path, encoding="utf-8") as f:
        text = re.sub(r"```.*?```", "", f.read(), flags=re.S)
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        resolved = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
        if not os.path.exists(resolved):
            broken.append(target)
        elif anchor and resolved.endswith(".md") and anchor not in anchors(resolved):
            broken.append(target)
    assert not broken, f"{document}: links that lead nowhere: {broken}"
