"""The runner: each section in a process of its own, the model family, and the machine the figures belong to.

`run` starts one child process per section (`python -m tfvae.bench --child ...`), so that its peak memory
(os.wait4) is its own; parent and child exchange JSON files: the section's options in, its result out.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from typing import Callable, Optional

from tfvae.bench import analyses, device, kernels, speed
from tfvae.bench.options import from_dict, to_dict
from tfvae.config import Config
from tfvae.errors import ConfigError, TfvaeError
from tfvae.io import atomic_write_text
from tfvae.presets import PRESETS

__all__ = ["Section", "SECTIONS", "DEFAULT_SECTIONS", "MODELS", "options_for", "run", "run_models", "machine",
           "child_env", "failures", "error_of"]


@dataclasses.dataclass(frozen=True)
class Section:
    """A kind of measurement: what runs it in the child process, and the options it takes."""

    measure: Callable  # options (and a variant, for train) -> a dict of JSON values
    options: type  # the frozen dataclass of its options


SECTIONS = {  # the report's keys, in this order
    "matmul": Section(kernels.section_matmul, kernels.ThroughputOptions),
    "conv": Section(kernels.section_conv, kernels.ThroughputOptions),
    "train": Section(speed.section_train, speed.TrainOptions),  # one process per variant
    "evaluate": Section(speed.section_evaluate, speed.EvaluateOptions),
    "profile": Section(speed.section_profile, speed.ProfileOptions),
    "strategies": Section(speed.section_strategies, speed.StrategiesOptions),
    "sample": Section(device.section_sample, device.SampleOptions),
    "gaps": Section(analyses.section_gaps, analyses.GapsOptions),
    "quality": Section(analyses.section_quality, analyses.QualityOptions),
}
DEFAULT_SECTIONS = ("matmul", "conv", "train", "evaluate")
# The model family, for `--models`: the presets (tfvae.presets), the classic model and one change at a time.
MODELS = tuple(PRESETS)
# CPU flags worth a line in the report: what the kernels can use.
_VECTOR_FLAGS = ("avx", "amx", "fma", "f16c", "sse4")


def options_for(sections, **values) -> dict:
    """{section: its options} for each of `sections`, each built from the `values` its options declare.

    >>> options_for(["sample"], export_dir="export", repeats=3, epochs=2)["sample"].repeats
    3
    """
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        raise ConfigError(f"unknown section {unknown[0]!r}; choose from: {', '.join(SECTIONS)}")
    chosen = {}
    for name in sections:
        cls = SECTIONS[name].options
        chosen[name] = cls(**{f.name: values[f.name] for f in dataclasses.fields(cls) if f.name in values})
    return chosen


def machine() -> dict:
    """The machine the figures belong to: CPUs, their model and vector flags, memory, versions."""
    from importlib import metadata

    cpu = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                cpu.setdefault(key.strip(), value.strip())  # the first processor's
    except OSError:  # not Linux
        pass
    memory = None
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            memory = int(next(line for line in f if line.startswith("MemTotal")).split()[1]) * 1024
    except (OSError, StopIteration, ValueError):
        pass
    versions = {}
    for package in ("tensorflow", "tf-keras", "tensorflow-probability", "ai-edge-litert", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu.get("model name") or platform.processor() or None,
        "cpu_flags": sorted(f for f in cpu.get("flags", "").split() if f.startswith(_VECTOR_FLAGS)),
        "memory_bytes": memory,
        "python": platform.python_version(),
        "versions": versions,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def child_env() -> dict:
    """The environment of a child process: quiet TensorFlow, and `python -m` not importing from the working
    directory (PYTHONSAFEPATH, Python 3.11+), so that a bench run inside another tfvae checkout measures the
    installed tfvae that started it, not that checkout's."""
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONSAFEPATH": "1"}


def _run_child(section: str, options_path: str, verbose: bool, variant: Optional[str] = None) -> dict:
    """Run one section in a fresh process; return its JSON result with its peak RSS added."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
        path = out.name
    command = [sys.executable, "-m", "tfvae.bench", "--child", section, options_path, path,
               *([variant] if variant else [])]
    try:
        process = subprocess.Popen(command, env=child_env(), stdout=subprocess.DEVNULL,
                                   stderr=None if verbose else subprocess.DEVNULL)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        result = json.loads(text) if text else {"error": f"exit {process.returncode}"}
    finally:
        os.remove(path)
    if process.returncode != 0:
        return {"error": result.get("error", f"exit {process.returncode}"), "command": shlex.join(command)}
    return result | {"peak_rss_mb": usage.ru_maxrss / 1024}  # Linux reports KiB


def _run_section(name: str, options, verbose: bool):
    """One section's result (train: a list, one per variant), from its own child process(es)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(to_dict(options), f)
        options_path = f.name
    try:
        if name == "train":
            return [{"variant": v} | _run_child(name, options_path, verbose, v) for v in options.variants]
        return _run_child(name, options_path, verbose)
    finally:
        os.remove(options_path)


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def run(config: Config, sections: dict, *, run_dir: Optional[str] = None, command: str = "",
        out: Optional[str] = None, log=None, verbose: bool = False, on_section=None) -> dict:
    """Run the chosen sections, each in its own process; the report, floors joined in.

    Args:
      config: the model measured, recorded in the report.
      sections: {section name: its options} (`options_for`), run in this order.
      run_dir: the trained run measured, if any, recorded in the report.
      command: the command line, recorded in the report.
      out: write the report here as JSON after every section (atomically), so a later failure loses nothing.
      log: called with a line of progress per section (default: none).
      verbose: show the child processes' stderr.
      on_section: called with the report so far after every section (`run_models` saves the whole report).

    Returns:
      {"machine", "date", "command", "model", "run_dir", sections..., "failed": [section names]}.
    """
    log = log or (lambda message: None)
    if out and not on_section:
        on_section = lambda report: _save(out, report)  # noqa: E731
    results = {"machine": machine(), "date": _now(), "command": command, "model": config.to_dict(), "run_dir": run_dir}
    for name, options in sections.items():
        log(f"bench: {name} ...")
        results[name] = _run_section(name, options, verbose)
        for failed in failures({name: results[name]}):
            log(f"bench: {failed} failed: {error_of(results, failed)}")
        kernels.join_floors(results)
        if on_section:
            on_section(results)
    results["failed"] = failures(results)
    if on_section:
        on_section(results)
    return results


def run_models(models: dict, *, command: str = "", out: Optional[str] = None, log=None, verbose: bool = False) -> dict:
    """`run` for each model of `models` ({name: (config, {section: options})}), in order, into one report.

    Returns:
      {"machine", "date", "command", "models": {name: run's report without the machine}, "failed": ["name:
      section", ...]}; written to `out` after every section of every model.
    """
    log = log or (lambda message: None)
    report = {"machine": machine(), "date": _now(), "command": command, "models": {}}

    def keep(name, results):
        report["models"][name] = {k: v for k, v in results.items() if k not in ("machine", "command")} | {
            "load_average": results["machine"]["load_average"]}  # at the model's start: was the machine idle?
        _save(out, report)

    for name, (config, sections) in models.items():
        log(f"bench: model {name}")
        run(config, sections, command=command, log=log, verbose=verbose,
            on_section=lambda results, name=name: keep(name, results))
    report["failed"] = [f"{name}: {section}" for name, results in report["models"].items()
                        for section in results["failed"]]
    _save(out, report)
    return report


def _save(out: Optional[str], report: dict) -> None:
    """Write the report as JSON to `out` (atomically), if given."""
    if out:
        atomic_write_text(out, json.dumps(report, indent=2) + "\n")


def failures(results: dict) -> list:
    """The report's failed sections, "train VARIANT" for one training variant."""
    names = []
    for name in SECTIONS:
        value = results.get(name)
        for i, entry in enumerate(value if isinstance(value, list) else [value] if value else []):
            if "error" in entry:
                names.append(f"{name} {entry.get('variant') or i}" if isinstance(value, list) else name)
    return names


def error_of(results: dict, name: str) -> str:
    """The error message of a failed section, "train VARIANT" for one training variant."""
    section, _, variant = name.partition(" ")
    value = results[section]
    if isinstance(value, list):
        value = next((e for i, e in enumerate(value) if variant in (str(i), e.get("variant"))), value[0])
    return value["error"]


def child(section: str, options_path: str, out_path: str, variant: Optional[str] = None) -> int:
    """Inside a child process: run one section, write its JSON (or {"error": ...} for a known failure)."""
    with open(options_path, encoding="utf-8") as f:
        options = from_dict(SECTIONS[section].options, json.load(f))
    measure = SECTIONS[section].measure
    try:
        result = measure(options, variant) if variant else measure(options)
    except TfvaeError as e:
        atomic_write_text(out_path, json.dumps({"error": str(e)}))
        return 1
    atomic_write_text(out_path, json.dumps(result))
    return 0
