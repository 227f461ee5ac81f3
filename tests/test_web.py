"""Tests for `tfvae export --web`: the folder it writes, its errors, and the page itself in a real headless Chromium.

The tests marked `browser` serve OUT/web on 127.0.0.1 with Python's static file
server (what `python -m http.server` runs) and drive Debian's chromium with the
network closed beyond 127.0.0.1 (tests/web_browser.py). Without chromium and
chromedriver they are skipped with the reason (`-rs` prints it); on CI (CI=true),
where .ci/run installs them, they fail instead.

One tiny run (D = 2) is exported once for the module, with the web page and the
TFLite files; a second tiny run with a learned mixture prior (mog, K = 3) is
exported with the page alone, for the page's sampling of a mixture.
"""

import hashlib
import json
import math
import os
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from tfvae.config import Config, save_config
from tfvae.errors import ModelFileError, WriteError
from tfvae.export import layout, litertjs
from tfvae.mixture import Mixture

import web_browser

LATENT_DIM = 2
QUIET = lambda message: None  # noqa: E731
PAGE_FILES = {"index.html", "tfvae.js", "random.js", "style.css", "tfvae.json", "decoder.tflite", "decoder_int8.tflite"}


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
    """(export directory, manifest): the tiny run with --tflite --web."""
    from tfvae.export.exporter import export_run

    out = str(tmp_path_factory.mktemp("web") / "export")
    manifest = export_run(run_dir, out, tflite=True, web=True, log=QUIET)
    return out, manifest


@pytest.fixture(scope="module")
def site(exported):
    return os.path.join(exported[0], layout.WEB_DIR)


MIXTURE_COMPONENTS = 3


@pytest.fixture(scope="module")
def mixture_exported(tmp_path_factory, synthetic_data_dir):
    """The export directory of a one-epoch tiny run with --prior mog --prior-components 3, with --web."""
    from tfvae.config import Config
    from tfvae.export.exporter import export_run
    from tfvae.train import train_and_evaluate

    config = Config(epochs=1, limit=256, latent_dim=LATENT_DIM, hidden_units=16, batch_size=64, prior="mog",
                    prior_components=MIXTURE_COMPONENTS, data_dir=synthetic_data_dir)
    run_dir = str(tmp_path_factory.mktemp("mog") / "run")
    train_and_evaluate(config, run_dir, verbose=0, log=QUIET)
    out = os.path.join(run_dir, "export")
    export_run(run_dir, out, web=True, log=QUIET)
    return out


@pytest.fixture(scope="module")
def mixture_site(mixture_exported):
    return os.path.join(mixture_exported, layout.WEB_DIR)


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# --------------------------------------------------------------------------- the folder


def test_web_folder_holds_the_page_the_runtime_and_its_licence(site):
    runtime = os.path.join(site, layout.WEB_RUNTIME_DIR)
    assert PAGE_FILES <= set(os.listdir(site))
    assert set(os.listdir(site)) == PAGE_FILES | {layout.WEB_RUNTIME_DIR}
    info = read_json(os.path.join(runtime, "litertjs.json"))
    assert info["packages"]["@litertjs/core"]["license"] == "Apache-2.0"
    with open(os.path.join(runtime, "LICENSE"), encoding="utf-8") as f:
        assert "Apache License" in f.read()
    for relative, digest in info["files"].items():  # byte for byte what npm shipped
        assert sha256(os.path.join(runtime, relative)) == digest, relative
    assert set(info["files"]) == set(litertjs.RUNTIME_FILES)


def test_the_page_names_no_other_host(site):
    """Nothing in the page's own files points outside its folder (the runtime's comments cite URLs; it loads none)."""
    import re

    with open(os.path.join(site, "index.html"), encoding="utf-8") as f:
        html = f.read()
    for name in ("index.html", "tfvae.js", "random.js", "style.css"):
        with open(os.path.join(site, name), encoding="utf-8") as f:
            hosts = set(re.findall(r"(?:https?:)?//([a-z0-9.-]+\.[a-z]{2,}|\d+\.\d+\.\d+\.\d+)", f.read()))
        assert hosts <= {"127.0.0.1"}, (name, hosts)
    imports = json.loads(re.search(r'<script type="importmap">(.+?)</script>', html, re.S).group(1))["imports"]
    for target in imports.values():  # the import map resolves to vendored files
        assert os.path.isfile(os.path.join(site, target)), target


def test_manifest_records_the_web_decoders_shapes_and_parity(exported):
    directory, manifest = exported
    assert read_json(os.path.join(directory, "manifest.json")) == manifest
    web = manifest["web"]
    assert web["batch"] == layout.WEB_BATCH == 64 and web["default_model"] == "float32"
    assert set(web["models"]) == set(layout.WEB_MODELS) == {"float32", "int8"}
    for name, model in web["models"].items():
        assert model["inputs"] == {"z": [64, LATENT_DIM]}, name
        assert model["outputs"] == {"logits": [64, 28, 28, 1], "probs": [64, 28, 28, 1]}, name
        assert model["file"] in manifest["files"], name  # with its size and sha256
    assert "web/litertjs/wasm/litert_wasm_internal.wasm" in manifest["files"]
    assert manifest["parity"]["web/decoder.tflite"]["max_abs_diff_probs"] < 1e-5
    assert 0 < manifest["parity"]["web/decoder_int8.tflite"]["max_abs_diff_probs"] < 0.1
    assert web["runtime"]["@litertjs/core"] == litertjs.runtime_info()["packages"]["@litertjs/core"]["version"]


def test_web_decoders_have_a_fixed_batch_and_run_in_the_python_sampler_too(exported, site):
    from ai_edge_litert.interpreter import Interpreter

    from tfvae.export.sampler import open_decoder, sample

    for file in layout.WEB_MODEL_FILES.values():
        runner = Interpreter(model_path=os.path.join(site, file)).get_signature_runner("decode")
        assert list(runner.get_input_details()["z"]["shape_signature"]) == [64, LATENT_DIM], file
    web = sample(open_decoder(os.path.join(site, "decoder.tflite")), 10, seed=3)  # resized to 10 by the interpreter
    dynamic = sample(open_decoder(os.path.join(exported[0], "decoder.tflite")), 10, seed=3)
    np.testing.assert_allclose(web.probs, dynamic.probs, atol=1e-6)


def test_page_config_tells_the_page_what_it_needs_and_no_local_paths(site):
    config = read_json(os.path.join(site, layout.WEB_CONFIG_FILE))
    assert config["latent_dim"] == LATENT_DIM and config["batch"] == 64 and config["image_shape"] == [28, 28, 1]
    assert config["prior"] == {"family": "normal", "loc": 0.0, "scale": 1.0}
    assert config["manifold"] == {"side": 20, "eps": 0.05}  # as manifold.png
    assert {name: model["file"] for name, model in config["models"].items()} == layout.WEB_MODEL_FILES
    assert config["grid"]["columns"] ** 2 == config["batch"]
    assert os.sep + "tmp" not in json.dumps(config)


def test_page_config_of_a_learned_prior_is_its_prior_npz_to_float32_precision(mixture_exported, mixture_site):
    """tfvae.json's prior is the export's prior.npz, value for value as float32; the N(0, I) page keeps its form."""
    from tfvae.export.web import manifold_prior_mass

    config = read_json(os.path.join(mixture_site, layout.WEB_CONFIG_FILE))
    prior = config["prior"]
    assert prior["family"] == "mixture" and prior["trained"] == "mog" and prior["components"] == MIXTURE_COMPONENTS
    with np.load(os.path.join(mixture_exported, layout.PRIOR_FILE), allow_pickle=False) as npz:
        for name in ("logits", "loc", "scale"):
            written = np.array(prior[name], dtype=np.float64)
            assert written.shape == npz[name].shape, name
            assert np.array_equal(written.astype(np.float32), npz[name]), name  # the same float32, every value
            shortest = [float(str(value)) for value in npz[name].ravel()]  # the shortest decimal of each float32
            assert written.ravel().tolist() == shortest, name  # no digits beyond float32's
    assert not np.allclose(prior["loc"], 0)  # a learned prior, not N(0, I) in disguise
    mixture = Mixture.load(os.path.join(mixture_exported, layout.PRIOR_FILE))
    assert config["manifold"]["prior_mass"] == round(manifold_prior_mass(mixture), 4)
    with open(os.path.join(mixture_site, layout.WEB_CONFIG_FILE), encoding="utf-8") as f:
        lines = f.read().splitlines()
    assert len(lines) < 100  # a row of loc or scale per line, not a number per line


def test_manifold_prior_mass_is_the_mixtures_mass_in_the_square():
    from tfvae.export.web import manifold_prior_mass

    assert manifold_prior_mass(Mixture.standard_normal(2)) == pytest.approx(0.9**2)  # 5% cut on each side
    far = Mixture(np.log([0.75, 0.25]), np.array([[0.0, 0.0], [50.0, 0.0]]), np.ones((2, 2)))
    assert manifold_prior_mass(far) == pytest.approx(0.75 * 0.9**2)
    rng = np.random.default_rng(0)
    wide = Mixture(np.array([0.0, 1.0]), np.array([[1.0, -0.5], [0.0, 2.0]]), np.array([[0.5, 1.0], [2.0, 0.3]]))
    z = wide.sample(rng, 200_000, dtype=np.float64)
    inside = np.mean(np.all(np.abs(z) <= plots_manifold_edge(), axis=1))
    assert manifold_prior_mass(wide) == pytest.approx(inside, abs=0.005)  # Monte Carlo: sd 0.001


def plots_manifold_edge():
    """The manifold grid's outermost |z| (the normal quantile of 1 - eps), from tfvae.plots."""
    from tfvae import plots

    return float(np.max(plots.manifold_latents(20)))


def test_check_web_decoder_refuses_an_encoder_and_a_dynamic_batch(exported):
    from tfvae.export.web import check_web_decoder

    directory, _ = exported
    with pytest.raises(ModelFileError, match="has no 'decode' signature") as error:
        check_web_decoder(os.path.join(directory, "encoder.tflite"), 64, LATENT_DIM)
    assert "\n" not in str(error.value)
    with pytest.raises(ModelFileError, match=r"input 'z' has shape \[-1, 2\], expected \[64, 2\]"):
        check_web_decoder(os.path.join(directory, "decoder.tflite"), 64, LATENT_DIM)


def test_a_damaged_runtime_fails_the_export_and_leaves_nothing(run_dir, tmp_path, monkeypatch):
    from tfvae.errors import InstallError
    from tfvae.export.exporter import export_run

    info = litertjs.runtime_info()
    info["files"]["wasm/litert_wasm_internal.wasm"] = "0" * 64
    monkeypatch.setattr(litertjs, "runtime_info", lambda: info)
    with pytest.raises(InstallError, match="LiteRT.js runtime of this tfvae install is damaged"):
        export_run(run_dir, str(tmp_path / "out"), web=True, log=QUIET)
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- the command line


def run_cli(*args):
    from tfvae.cli.main import cli

    return CliRunner().invoke(cli, ["export", *args])


def one_line_error(result, exit_code=1):
    assert result.exit_code == exit_code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), lines
    return lines[0]


def test_cli_web_without_tflite_starts_with_the_chosen_model(run_dir, tmp_path):
    out = str(tmp_path / "exp")
    result = run_cli("--run-dir", run_dir, "--out", out, "--web", "--web-model", "int8")
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(out)) == ["manifest.json", "prior.npz", "saved_model", "web"]
    assert read_json(os.path.join(out, "web", layout.WEB_CONFIG_FILE))["default_model"] == "int8"
    assert f"python -m http.server -d {os.path.join(out, 'web')} 8000" in result.stderr


def test_cli_web_of_a_run_without_a_decoder_is_one_line(tmp_path):
    save_config(Config(latent_dim=2), str(tmp_path / "config.json"))  # a run that never finished an epoch
    line = one_line_error(run_cli("--run-dir", str(tmp_path), "--web"))
    assert "has no checkpoint" in line
    assert not os.path.exists(tmp_path / "export")


def test_cli_web_on_an_encoder_file_is_one_line(exported):
    line = one_line_error(run_cli("--run-dir", os.path.join(exported[0], "encoder.tflite"), "--web"), exit_code=2)
    assert "is a file" in line


@pytest.mark.parametrize("out", ["/sys/tfvae-web-export", "FILE/web"])
def test_cli_web_to_an_unwritable_out_is_one_line_before_any_work(run_dir, tmp_path, out):
    (tmp_path / "FILE").write_text("a file, not a folder")
    out = out.replace("FILE", str(tmp_path / "FILE"))
    line = one_line_error(run_cli("--run-dir", run_dir, "--out", out, "--web"))
    assert line.startswith(f"Error: cannot write to --out {out}: ")


def test_cli_web_model_needs_web_and_a_known_name(run_dir):
    assert "add --web" in one_line_error(run_cli("--run-dir", run_dir, "--web-model", "int8"))
    line = one_line_error(run_cli("--run-dir", run_dir, "--web", "--web-model", "fp16"), exit_code=2)
    assert "'fp16' is not one of 'float32', 'int8'" in line


def test_unwritable_out_is_a_write_error(run_dir):
    from tfvae.export.exporter import export_run

    with pytest.raises(WriteError, match="cannot write to --out /sys/x"):
        export_run(run_dir, "/sys/x", web=True, log=QUIET)


# --------------------------------------------------------------------------- the page in Chromium


def mulberry32_uniforms(seed):
    """random.js's uniforms in Python: mulberry32, then (x + 0.5) / 2^32; each call gives the next."""
    mask = 0xFFFFFFFF
    state = seed & mask

    def uniform():
        nonlocal state
        state = (state + 0x6D2B79F5) & mask
        t = state
        t = ((t ^ (t >> 15)) * (t | 1)) & mask
        t = (t ^ ((t + (((t ^ (t >> 7)) * (t | 61)) & mask)) & mask)) & mask
        return (((t ^ (t >> 14)) & mask) + 0.5) / 2.0**32

    return uniform


def box_muller(uniform, count):
    normals = []
    while len(normals) < count:
        r, angle = math.sqrt(-2.0 * math.log(uniform())), 2.0 * math.pi * uniform()
        normals += [r * math.cos(angle), r * math.sin(angle)]
    return np.array(normals[:count])


def mulberry32_normals(seed, count):
    """random.js's standardNormals in Python: mulberry32 uniforms, Box-Muller pairs."""
    return box_muller(mulberry32_uniforms(seed), count)


def mixture_replay(seed, n, prior, temperature=1.0):
    """random.js's drawPrior for a mixture, replayed in Python: (z (n, D) float64, components (n,)).

    The n * D normals first, then one uniform per image, whose component is tfvae.mixture's inverse CDF.
    """
    uniform = mulberry32_uniforms(seed)
    eps = box_muller(uniform, n * prior.latent_dim).reshape(n, prior.latent_dim)
    u = np.array([uniform() for _ in range(n)])
    cdf = np.cumsum(np.exp(prior.log_weights()))
    components = np.minimum(np.searchsorted(cdf, u * cdf[-1], side="right"), prior.components - 1)
    return prior.transform(eps, u, temperature), components


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium with the network closed beyond 127.0.0.1; skipped (failed on CI) without one."""
    yield from web_browser.chromium_for_tests()


@pytest.fixture(scope="module")
def server(site):
    """(base URL, requests answered) of OUT/web served on 127.0.0.1."""
    with web_browser.serve(site) as served:
        yield served


def load(browser, server, query=""):
    base, _ = server
    web_browser.requested_urls(browser)  # drop what came before
    attributes = web_browser.open_page(browser, base + "index.html" + query)
    assert attributes["status"] == "ready", attributes
    return attributes


@pytest.mark.browser
def test_page_is_ready_and_asks_only_the_local_server(browser, server):
    base, answered = server
    answered.clear()
    attributes = load(browser, server, "?seed=0")
    assert web_browser.foreign_requests(web_browser.requested_urls(browser), base) == []
    assert all(status == 200 for _, status in answered), answered  # no 404: nothing missing, not even an icon
    fetched = {path for path, _ in answered}
    assert {"/index.html?seed=0", "/tfvae.json", "/decoder.tflite", "/litertjs/core/index.js"} <= fetched
    assert attributes["samples"] == "64" and attributes["model"] == "float32" and attributes["seed"] == "0"
    assert 0 < float(attributes["mean"]) < 1
    status = browser.find_element("id", "status").text
    assert "decoder.tflite" in status and "LiteRT.js" in status and "WebAssembly" in status
    print(f"\nready in {attributes['readyMs']} ms after navigation ({attributes['seconds']:.2f} s from driver.get)")


@pytest.mark.browser
def test_grid_strip_and_manifold_show_the_decoders_means_and_are_not_uniform(browser, server, site):
    """Each canvas, pixel by pixel, is round(255 p) of the same z through the same decoder in Python."""
    from tfvae import plots
    from tfvae.export.sampler import open_decoder

    load(browser, server, "?seed=0")
    decoder = open_decoder(os.path.join(site, "decoder.tflite"))
    z = mulberry32_normals(0, 64 * LATENT_DIM).astype(np.float32).reshape(64, LATENT_DIM)
    t = np.arange(10)[:, None] / 9.0
    strip = ((1 - t) * z[0].astype(np.float64) + t * z[1]).astype(np.float32)  # sample 1 to sample 2, as random.js
    expected = {"grid": (z, 8), "strip": (strip, 10), "manifold": (plots.manifold_latents(20), 20)}
    for canvas, (latents, columns) in expected.items():
        grey = web_browser.canvas_grey(browser, canvas)
        want = np.round(255 * plots.tile(decoder.decode(latents)["probs"], columns))
        assert grey.shape == want.shape, canvas
        assert np.max(np.abs(grey - want)) <= 1, canvas  # float round-off may move a level across .5
        assert grey.std() > 1 and len(np.unique(grey)) > 20, canvas  # neither blank nor uniform


@pytest.mark.browser
@pytest.mark.parametrize("model", layout.WEB_MODELS)
def test_page_mean_agrees_with_the_python_sampler_on_the_same_decoder(browser, server, site, model):
    """data-tfvae-mean against the Python edge sampler: within sampling error, and exactly with the same z."""
    from tfvae.export.sampler import open_decoder, sample

    attributes = load(browser, server, f"?model={model}&seed=0")
    assert attributes["model"] == model
    js_mean, n = float(attributes["mean"]), int(attributes["samples"])
    decoder = open_decoder(os.path.join(site, layout.WEB_MODEL_FILES[model]))

    # Within sampling error: the means of many grids of n from numpy's generator give the spread of one grid's mean.
    means = np.array([sample(decoder, n, seed=seed).probs.mean(dtype=np.float64) for seed in range(200)])
    spread = means.std(ddof=1)
    print(f"\n{model}: page mean {js_mean:.5f}; Python sampler {means.mean():.5f} +- {spread:.5f} "
          f"(sd of one grid's mean over 200 grids of {n}); |difference| = {abs(js_mean - means.mean()) / spread:.2f} sd")
    assert abs(js_mean - means.mean()) < 4 * spread

    # Exactly: the page's own z (random.js, replayed in Python) through the same file in the Python interpreter.
    z = mulberry32_normals(0, n * LATENT_DIM).astype(np.float32).reshape(n, LATENT_DIM)
    assert abs(js_mean - decoder.decode(z)["probs"].mean(dtype=np.float64)) < 1e-5


@pytest.mark.browser
def test_the_same_seed_draws_the_same_grid(browser, server):
    first = load(browser, server, "?seed=5&t=0.8")
    again = load(browser, server, "?seed=5&t=0.8")
    other = load(browser, server, "?seed=6&t=0.8")
    assert first["mean"] == again["mean"] and first["temperature"] == "0.8"
    assert other["mean"] != first["mean"]


@pytest.mark.browser
def test_new_samples_moves_to_the_next_seed_and_the_address_follows(browser, server):
    first = load(browser, server, "?seed=10")
    browser.find_element("id", "new-samples").click()
    after = web_browser.wait_for_status(browser, until=lambda a: a.get("seed") == "11" and a["status"] == "ready")
    assert after["mean"] != first["mean"]
    assert browser.execute_script("return location.search") == "?model=float32&seed=11&t=1"
    assert browser.find_element("id", "seed").get_attribute("value") == "11"
    assert load(browser, server, "?seed=11")["mean"] == after["mean"]  # a reload draws the same grid


@pytest.mark.browser
def test_random_js_matches_its_python_replay_and_the_manifold_of_plots(browser, server):
    from tfvae import plots

    load(browser, server)
    result = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "import('./random.js').then((r) => done({"
        "  normals: Array.from(r.standardNormals(123, 1001)),"
        "  manifold: Array.from(r.manifoldLatents(20, 0.05))}));"
    )
    np.testing.assert_allclose(result["normals"], mulberry32_normals(123, 1001), rtol=0, atol=1e-12)
    normals = np.array(result["normals"])
    assert abs(normals.mean()) < 0.1 and abs(normals.std() - 1) < 0.1
    np.testing.assert_allclose(np.array(result["manifold"]).reshape(-1, 2), plots.manifold_latents(20), atol=1e-6)


# LiteRT.js picks its build by instantiating tiny feature-test modules; failing those (and only those) is what a
# browser without relaxed SIMD (Safari, older Firefox) shows it.
WITHOUT_RELAXED_SIMD = """
(() => {
  const instantiate = WebAssembly.instantiate;
  WebAssembly.instantiate = function (source, ...rest) {
    if (source instanceof Uint8Array && source.length < 200) {
      return Promise.reject(new WebAssembly.CompileError("no relaxed SIMD in this test"));
    }
    return instantiate.call(this, source, ...rest);
  };
})();
"""


@pytest.mark.browser
def test_browsers_without_relaxed_simd_run_the_vendored_compatible_build(browser, server):
    base, answered = server
    reference = load(browser, server, "?seed=0")
    script = browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": WITHOUT_RELAXED_SIMD})
    try:
        answered.clear()
        attributes = load(browser, server, "?seed=0")
    finally:
        browser.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", script)
    assert "/litertjs/wasm/litert_wasm_compat_internal.wasm" in {path for path, _ in answered}
    assert "compatible build" in browser.find_element("id", "status").text
    assert float(attributes["mean"]) == pytest.approx(float(reference["mean"]), abs=1e-6)


@pytest.mark.browser
def test_the_page_says_so_when_webassembly_is_unavailable(server):
    base, _ = server
    # V8 without its JIT has no WebAssembly object at all, as in browsers' hardened modes.
    with web_browser.chromium(extra_flags=["--js-flags=--jitless"]) as driver:
        attributes = web_browser.open_page(driver, base + "index.html")
        assert attributes["status"] == "error", attributes
        assert "no WebAssembly" in attributes["error"]
        assert driver.find_element("id", "error").is_displayed()
        assert "no WebAssembly" in driver.find_element("id", "error").text


@pytest.mark.browser
@pytest.mark.parametrize("damage, message", [
    ("missing", "could not fetch decoder.tflite: HTTP 404"),
    ("encoder", "decoder.tflite is not a tfvae decoder: it has no 'decode' signature (it has: encode)"),
    ("not tflite", "decoder.tflite is not a TFLite model"),
    ("dynamic batch", "decoder.tflite is not this export's web decoder: it takes z [-1,2] float32, expected z [64,2]"),
])
def test_the_page_says_so_when_the_model_fails_to_load(browser, exported, site, tmp_path, damage, message):
    copy = str(tmp_path / "web")
    shutil.copytree(site, copy)
    model = os.path.join(copy, "decoder.tflite")
    if damage == "missing":
        os.remove(model)
    elif damage == "encoder":
        shutil.copyfile(os.path.join(exported[0], "encoder.tflite"), model)
    elif damage == "dynamic batch":  # the --tflite decoder, which LiteRT.js would refuse at run time
        shutil.copyfile(os.path.join(exported[0], "decoder.tflite"), model)
    else:
        with open(model, "wb") as f:
            f.write(b"<html>not a model</html>")
    with web_browser.serve(copy) as (base, _):
        attributes = web_browser.open_page(browser, base + "index.html")
    assert attributes["status"] == "error" and message in attributes["error"], attributes
    assert message in browser.find_element("id", "error").text


@pytest.mark.browser
def test_a_page_opened_as_a_file_says_to_serve_it(browser, site):
    attributes = web_browser.open_page(browser, "file://" + os.path.join(site, "index.html"))
    assert attributes["status"] == "error" and "must be served over HTTP" in attributes["error"], attributes


@pytest.mark.browser
def test_a_bad_address_is_a_clear_error(browser, server):
    base, _ = server
    attributes = web_browser.open_page(browser, base + "index.html?model=int4")
    assert attributes["status"] == "error" and "unknown model 'int4'" in attributes["error"]


@pytest.mark.browser
def test_screenshot_of_the_page(browser, server, tmp_path):
    """A PNG of the page as a person sees it; TFVAE_WEB_SCREENSHOT=PATH keeps a copy (see docs/export.md)."""
    from PIL import Image

    load(browser, server, "?seed=0")
    path = str(tmp_path / "web.png")
    web_browser.screenshot(browser, path)
    pixels = np.asarray(Image.open(path).convert("L"), dtype=np.float64)
    assert pixels.shape[0] > 600 and pixels.std() > 20
    if os.environ.get("TFVAE_WEB_SCREENSHOT"):
        shutil.copyfile(path, os.environ["TFVAE_WEB_SCREENSHOT"])


# --------------------------------------------------------------------------- a learned prior in Chromium


def page_latents(attributes, latent_dim=LATENT_DIM):
    """(z (64, D), components (64,)) that the page drew for its grid, from data-tfvae-z and -components."""
    z = np.array([float(v) for v in attributes["z"].split(",")]).reshape(-1, latent_dim)
    return z, np.array([int(k) for k in attributes["components"].split(",")])


@pytest.fixture(scope="module")
def mixture_server(mixture_site):
    with web_browser.serve(mixture_site) as served:
        yield served


@pytest.mark.browser
def test_the_n01_page_exposes_its_latents_as_before(browser, server):
    """The N(0, I) page draws what it always drew (the first 64 * D normals) and says each image is component 0."""
    attributes = load(browser, server, "?seed=4&t=0.7")
    z, components = page_latents(attributes)
    want = (0.7 * mulberry32_normals(4, 64 * LATENT_DIM)).astype(np.float32).reshape(64, LATENT_DIM)
    np.testing.assert_array_equal(z, want)
    assert not components.any()
    assert "N(0, I)" in browser.find_element("id", "prior-caption").text


@pytest.mark.browser
def test_a_mixture_prior_page_draws_its_grid_from_the_exported_mixture(browser, mixture_server, mixture_site,
                                                                        mixture_exported):
    """A mog export loads with no console error; its grid is the mixture's z (replayed in Python) decoded."""
    from tfvae import plots
    from tfvae.export.sampler import open_decoder

    base, answered = mixture_server
    browser.get_log("browser")  # drop what came before
    answered.clear()
    attributes = load(browser, mixture_server, "?seed=2&t=0.9")
    assert web_browser.console_errors(browser) == []
    assert all(status == 200 for _, status in answered), answered
    prior = Mixture.load(os.path.join(mixture_exported, layout.PRIOR_FILE))

    z, components = page_latents(attributes)
    want, want_components = mixture_replay(2, 64, prior, temperature=0.9)
    np.testing.assert_array_equal(components, want_components)
    np.testing.assert_allclose(z, want.astype(np.float32), rtol=0, atol=1e-6)
    assert len(set(components)) > 1  # the grid shows more than one component of the learned prior

    decoder = open_decoder(os.path.join(mixture_site, "decoder.tflite"))
    grey = web_browser.canvas_grey(browser, "grid")
    expected = np.round(255 * plots.tile(decoder.decode(z.astype(np.float32))["probs"], 8))
    assert np.max(np.abs(grey - expected)) <= 1
    assert grey.std() > 1 and len(np.unique(grey)) > 20
    prior_caption = browser.find_element("id", "prior-caption").text
    assert "learned mixture of Gaussians: a mixture of 3 diagonal Gaussians" in prior_caption
    caption = browser.find_element("id", "manifold-caption").text
    assert "not of the learned prior" in caption and "% of its mass" in caption


# Two far-apart components with weights 0.8 / 0.2 and a different scale in each dimension.
KNOWN_MIXTURE = {
    "logits": [math.log(0.8), math.log(0.2)],
    "loc": [[-4.0, 3.0], [5.0, -2.0]],
    "scale": [[0.5, 1.5], [1.0, 0.25]],
}


@pytest.fixture(scope="module")
def known_mixture_server(mixture_site, tmp_path_factory):
    """The mog page, with tfvae.json's prior replaced by KNOWN_MIXTURE."""
    copy = str(tmp_path_factory.mktemp("known") / "web")
    shutil.copytree(mixture_site, copy)
    path = os.path.join(copy, layout.WEB_CONFIG_FILE)
    config = read_json(path)
    config["prior"] = {"family": "mixture", "trained": "mog", "components": 2, **KNOWN_MIXTURE}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(config, f)
    with web_browser.serve(copy) as served:
        yield served


DRAW_WITH_THE_PAGES_PRIOR = """
const [seed, n, temperature, done] = arguments;
Promise.all([import('./random.js'), fetch('tfvae.json').then((r) => r.json())]).then(([random, config]) => {
  const drawn = random.drawPrior(seed, n, config.latent_dim, temperature, config.prior);
  done({z: Array.from(drawn.z), components: Array.from(drawn.components)});
});
"""


@pytest.mark.browser
def test_the_pages_mixture_draws_have_the_mixtures_weights_means_and_spread(browser, known_mixture_server):
    """4000 draws of random.js's drawPrior with the page's own prior: component frequencies and per-component means
    and standard deviations within sampling error; temperature 0.5 halves the spread within each component."""
    n, loc, scale = 4000, np.array(KNOWN_MIXTURE["loc"]), np.array(KNOWN_MIXTURE["scale"])
    for query, temperature in (("?seed=11", 1.0), ("?seed=11&t=0.5", 0.5)):  # the page draws its grid with drawPrior
        attributes = load(browser, known_mixture_server, query)
        page_z, page_components = page_latents(attributes)
        grid = browser.execute_async_script(DRAW_WITH_THE_PAGES_PRIOR, 11, 64, temperature)
        np.testing.assert_array_equal(page_z, np.array(grid["z"]).reshape(64, 2))
        np.testing.assert_array_equal(page_components, grid["components"])
    assert web_browser.console_errors(browser) == []

    draws = {}
    for temperature in (1.0, 0.5):
        drawn = browser.execute_async_script(DRAW_WITH_THE_PAGES_PRIOR, 123, n, temperature)
        draws[temperature] = np.array(drawn["z"]).reshape(n, 2), np.array(drawn["components"])
    z, components = draws[1.0]
    frequency = np.mean(components == 0)
    assert abs(frequency - 0.8) < 4 * math.sqrt(0.8 * 0.2 / n), frequency  # 4 sd: 0.025
    nearest = np.argmin(((z[:, None, :] - loc[None]) ** 2).sum(-1), axis=1)
    assert np.mean(nearest == components) > 0.999  # each z lies by its own component's loc
    for k in range(2):
        chosen = z[components == k]
        stderr = scale[k] / math.sqrt(len(chosen))
        assert np.all(np.abs(chosen.mean(axis=0) - loc[k]) < 4 * stderr), (k, chosen.mean(axis=0))
        # The sd of a sample sd is about sd / sqrt(2 m): 4 of those.
        assert np.all(np.abs(chosen.std(axis=0, ddof=1) / scale[k] - 1) < 4 / math.sqrt(2 * len(chosen))), k

    cooled, cooled_components = draws[0.5]
    np.testing.assert_array_equal(cooled_components, components)  # the same uniforms pick the same components
    for k in range(2):
        spread = z[components == k].std(axis=0, ddof=1)
        cooled_spread = cooled[cooled_components == k].std(axis=0, ddof=1)
        np.testing.assert_allclose(cooled_spread / spread, 0.5, rtol=1e-5)  # the same eps, half the scale
        stderr = 0.5 * scale[k] / math.sqrt(np.sum(components == k))
        assert np.all(np.abs(cooled[cooled_components == k].mean(axis=0) - loc[k]) < 4 * stderr), k


@pytest.mark.browser
@pytest.mark.parametrize("prior, message", [
    ({"family": "student", "df": 3},
     "tfvae.json's prior has family \"student\"; this page samples \"normal\" and \"mixture\""),
    ({"family": "mixture", **KNOWN_MIXTURE, "scale": [[0.5, 1.5], [1.0, -0.25]]},
     "tfvae.json's prior has a scale that is not positive"),
    ({"family": "mixture", **KNOWN_MIXTURE, "loc": [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]},
     "tfvae.json's prior is a mixture whose loc is not (K, D) = (2, 2) finite numbers"),
])
def test_a_prior_the_page_cannot_sample_is_a_clear_error(browser, mixture_site, tmp_path, prior, message):
    copy = str(tmp_path / "web")
    shutil.copytree(mixture_site, copy)
    path = os.path.join(copy, layout.WEB_CONFIG_FILE)
    config = read_json(path)
    config["prior"] = prior
    with open(path, "w", encoding="utf-8") as f:
        json.dump(config, f)
    with web_browser.serve(copy) as (base, _):
        attributes = web_browser.open_page(browser, base + "index.html")
    assert attributes["status"] == "error" and message in attributes["error"], attributes
