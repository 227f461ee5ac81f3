"""The class picker of a conditional model's web page (issue 28), in headless Chromium (tests/web_browser.py).

One tiny untrained conditional VAE (D = 2, 3 named classes, per-class mog prior) is exported with the page
alone. The page's contract for unconditional models is tests/test_web.py's, unchanged.
"""

import os

import numpy as np
import pytest

from tfvae.export import layout
from tfvae.mixture import Mixture

import web_browser
from test_web import mulberry32_normals

CLASSES = ("zero", "one", "two")
LATENT_DIM = 2


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    import tfvae
    from tfvae.export.exporter import export_model

    vae = tfvae.VAE(latent_dim=LATENT_DIM, hidden_units=8, classes=len(CLASSES), class_names=CLASSES, prior="mog")
    out = str(tmp_path_factory.mktemp("conditional-web") / "export")
    export_model(vae, out, web=True, log=lambda message: None)
    return out


@pytest.fixture(scope="module")
def browser():
    yield from web_browser.chromium_for_tests()


@pytest.fixture(scope="module")
def server(exported):
    with web_browser.serve(os.path.join(exported, layout.WEB_DIR)) as served:
        yield served


def load(browser, server, query):
    base, _ = server
    attributes = web_browser.open_page(browser, base + "index.html" + query)
    assert attributes["status"] == "ready", attributes
    return attributes


@pytest.mark.browser
def test_the_grid_is_the_class_picked_from_its_component_of_the_prior(browser, server, exported):
    """?label=2: z = loc_2 + T scale_2 eps (eps the page's normals), decoded with label 2, pixel for pixel."""
    from tfvae import plots
    from tfvae.export.sampler import open_decoder

    browser.get_log("browser")  # drop what came before
    attributes = load(browser, server, "?seed=3&t=0.8&label=2")
    assert web_browser.console_errors(browser) == []
    assert attributes["label"] == "2" and set(attributes["components"].split(",")) == {"2"}
    prior = Mixture.load(os.path.join(exported, layout.PRIOR_FILE))
    eps = mulberry32_normals(3, 64 * LATENT_DIM).reshape(64, LATENT_DIM)
    z = np.array([float(v) for v in attributes["z"].split(",")]).reshape(64, LATENT_DIM)
    np.testing.assert_allclose(z, (prior.loc[2] + 0.8 * prior.scale[2] * eps).astype(np.float32), atol=1e-6)
    decoder = open_decoder(os.path.join(exported, layout.WEB_DIR, "decoder.tflite"))
    want = np.round(255 * plots.tile(decoder.decode(z.astype(np.float32), np.full(64, 2))["probs"], 8))
    assert np.max(np.abs(web_browser.canvas_grey(browser, "grid") - want)) <= 1
    assert browser.execute_script("return location.search") == "?model=float32&seed=3&t=0.8&label=2"
    assert "Class 2: two" in browser.find_element("id", "status").text


@pytest.mark.browser
def test_the_picker_lists_the_classes_and_the_address_follows_it(browser, server):
    from selenium.webdriver.support.ui import Select

    first = load(browser, server, "?seed=1&label=one")  # a class name in the address is taken too
    assert first["label"] == "1"
    picker = Select(browser.find_element("id", "label"))
    assert browser.find_element("id", "label-control").is_displayed()
    assert [option.text for option in picker.options] == ["0: zero", "1: one", "2: two"]
    assert picker.first_selected_option.get_attribute("value") == "1"
    picker.select_by_value("0")
    after = web_browser.wait_for_status(browser, until=lambda a: a.get("label") == "0" and a["status"] == "ready")
    assert after["mean"] != first["mean"] and after["seed"] == "1"
    assert browser.execute_script("return location.search") == "?model=float32&seed=1&t=1&label=0"
    assert load(browser, server, "?seed=1&label=0")["mean"] == after["mean"]  # a reload draws the same grid


@pytest.mark.browser
def test_a_label_outside_the_classes_is_a_clear_error(browser, server):
    base, _ = server
    attributes = web_browser.open_page(browser, base + "index.html?label=3")
    assert attributes["status"] == "error"
    assert "unknown label '3' in the address; choose an index from 0 to 2 or a class name: zero, one, two" in \
        attributes["error"]
