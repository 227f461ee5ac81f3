"""The report: every figure of `tfvae bench` as a markdown table, and one summary row per model of `--models`."""

from __future__ import annotations

from tfvae.bench.device import GRID
from tfvae.bench.runner import error_of

__all__ = ["table", "models_table"]


def _number(value, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def _floor_cell(result: dict) -> str:
    if result.get("floor_seconds") is None:
        return "n/a (no throughput for " + ", ".join(result.get("floor_missing", [])[:2]) + ")" \
            if result.get("floor_missing") else "n/a"
    return f"{_number(result['times_floor'])} (floor {_number(result['floor_seconds'], 3)} s)"


def table(results: dict) -> str:
    """Every figure of a report as one markdown table."""
    m = results.get("machine")
    lines = [
        f"{m.get('cpu_model')}, {m.get('cpus')} CPUs ({' '.join(f for f in m.get('cpu_flags', []) if 'avx512' in f or 'amx' in f)}), "
        f"{results.get('date')}",
        "",
    ] if m else []  # a model of `run_models`: the machine is the report's
    lines += ["| figure | value |", "| --- | --- |"]
    row = lambda name, value: lines.append(f"| {name} | {value} |")  # noqa: E731
    for section, unit in (("matmul", "GFLOP/s"), ("conv", "GFLOP/s")):
        entry = results.get(section)
        if not entry or "error" in entry:
            continue
        for key, value in entry.get("gflops", {}).items():
            row(f"{section} `{key}` ({unit})", _number(value, 1))
        for name, value in entry.get("weighted_gflops", {}).items():
            row(f"{section} over the {name} workload's products, time-weighted ({unit})", _number(value, 1))
        for size, value in entry.get("square_gflops", {}).items():
            row(f"{section} {size}² square ({unit})", _number(value, 1))
        row(f"{section} peak memory (MB)", _number(entry.get("peak_rss_mb"), 0))
    for train in results.get("train", []):
        if "error" in train:
            continue
        load = train["workload"]
        row(f"train {train['variant']}: s/epoch, images/s, × floor, peak MB ({train['examples']:,} images, "
            f"{load['flops'] / 1e9:,.1f} GFLOP, {load['flops_per_image'] / 1e6:.2f} MFLOP/image)",
            f"{_number(train['seconds_per_epoch'], 3)}, {_number(train['images_per_second'], 0)}, "
            f"{_floor_cell(train)}, {_number(train['peak_rss_mb'], 0)}")
    e = results.get("evaluate")
    if e and "error" not in e:
        load = e["workload"]
        row(f"evaluate K={e['importance_samples']} on {e['examples']:,} images: s, images/s, × floor, peak MB "
            f"({load['flops'] / 1e9:,.1f} GFLOP, {load['flops_per_sample'] / 1e6:.3f} MFLOP/sample)",
            f"{_number(e['seconds'], 2)}, {_number(e['images_per_second'], 2)}, {_floor_cell(e)}, "
            f"{_number(e['peak_rss_mb'], 0)}")
    for name, seconds in results.get("profile", {}).get("seconds_per_epoch", {}).items():
        row(f"profile: {name.replace('_', ' ')} (s/epoch)", _number(seconds, 3))
    for name, value in results.get("strategies", {}).items():
        if name != "peak_rss_mb":
            row(f"strategy {name} (s/epoch)", value if isinstance(value, str) else _number(value))
    s = results.get("sample")
    if s and "error" not in s:
        for name, size in s["files"].items():
            row(f"sample: `{name}` (bytes)", f"{size:,}")
        cost = s.get("quantization")
        if cost and cost.get("measured", True):  # an export without images says {"measured": false, "why": ...}
            for name, entry in cost["decoders"].items():
                row(f"sample: `{name}` max abs diff in probs, ELBO change, log p(x) change ({cost['subset']})",
                    f"{s['parity'][name]['max_abs_diff_probs']:.2e}, {entry['elbo_change']:+.4f}, "
                    f"{entry['log_likelihood_change']:+.4f}")
        for name, by_batch in s["latency_seconds"].items():
            row(f"sample: `{name}` decode, one thread, median (µs per image; per {GRID}-image grid)",
                f"{by_batch['batch_1'] * 1e6:,.1f}; {by_batch[f'batch_{GRID}'] * 1e6:,.1f}")
        prior = s.get("prior_seconds")
        if prior:
            row(f"sample: z for a {GRID}-image grid, prior.npz ({prior['components']} components); N(0, I); "
                "loading prior.npz", f"{prior['prior'] * 1e6:,.1f} µs; {prior['standard_normal'] * 1e6:,.1f} µs; "
                f"{prior['load'] * 1e3:.2f} ms")
        wall = s.get("sample_wall_seconds")
        if wall:
            row(f"sample: `tfvae sample` without TensorFlow, start to PNG (s, median of {wall['runs']}; min, max)",
                f"{wall['median']:.3f}; {wall['min']:.3f}, {wall['max']:.3f}")
        row("sample peak memory (MB)", _number(s.get("peak_rss_mb"), 0))
    g = results.get("gaps")
    if g and "error" not in g:
        row(f"gaps on {g['examples']:,} test images (q refined {g['refine_steps']:,} steps, log p(x) K={g['importance_samples']}): "
            "ELBO[q], ELBO[q*], log p(x)",
            f"{_number(g['elbo'])}, {_number(g['refined_elbo'])}, {_number(g['log_likelihood'])} ± "
            f"{_number(g['log_likelihood_stderr'])}")
        row("gaps: total, amortisation, approximation (nats)",
            f"{_number(g['total_gap'])} = {_number(g['amortisation_gap'])} + {_number(g['approximation_gap'])}")
    q = results.get("quality")
    if q and "error" not in q:
        row(f"quality: r, the full test set's gap over the first {q['gap_images']:,} images' (K={q['importance_samples']})",
            f"{_number(q['ratio'], 3)} ({q['ratio_from']})")
        stopped = "" if q.get("finished", True) else " (the run was stopped there)"
        row(f"quality: estimated test log p(x) at the run's model, epoch {q['model_epoch']}{stopped}",
            _number(q["log_likelihood"][str(q["model_epoch"])]))
        for threshold, hit in q["crossings"].items():
            row(f"quality: first epoch at or above {threshold} nats: epoch, estimate, training time",
                "not reached" if hit is None else
                f"{hit['epoch']}, {_number(hit['log_likelihood'])} (epoch before: {_number(hit['previous'])}), "
                f"{hit['training_seconds'] / 60:.1f} min")
    for name in results.get("failed", []):
        row(f"{name} failed", error_of(results, name).replace("|", "\\|"))
    return "\n".join(lines)


def models_table(report: dict) -> str:
    """A `run_models` report: one summary row per model, then each model's own table (`table`)."""
    m = report.get("machine", {})
    lines = [
        f"{m.get('cpu_model')}, {m.get('cpus')} CPUs, {report.get('date')}: `{report.get('command')}`",
        "",
        "| model | parameters | train: s/epoch, × floor, per variant | evaluate: images/s, × floor | peak MB |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, results in report["models"].items():
        trains = [t for t in results.get("train", []) if "error" not in t]
        train = "; ".join(f"{t['variant']} {_number(t['seconds_per_epoch'], 2)} s, {_number(t['times_floor'])}×"
                          for t in trains) or "n/a"
        e = results.get("evaluate") or {}
        evaluate = "n/a" if not e or "error" in e else \
            f"{_number(e['images_per_second'], 2)}, {_number(e['times_floor'])}× (K={e['importance_samples']})"
        peaks = [entry.get("peak_rss_mb") for entry in [*trains, e] if entry and "peak_rss_mb" in entry]
        parameters = f"{trains[0]['parameters']:,}" if trains and "parameters" in trains[0] else "n/a"
        lines.append(f"| {name} | {parameters} | {train} | {evaluate} | {_number(max(peaks), 0) if peaks else 'n/a'} |")
    for name in report.get("failed", []):
        lines.append(f"| {name} failed | | | | |")
    for name, results in report["models"].items():
        lines += ["", f"### {name}", "", table(results)]
    return "\n".join(lines)
