// The tfvae page: samples from a VAE decoder in the browser, with LiteRT.js on WebAssembly (the CPU).
//
//   k ~ Categorical(pi)           seeded (random.js)            (64,)      a mixture prior only: each image's component
//   z = loc_k + T scale_k eps     eps ~ N(0, I_D), seeded       (64, D)    the grid; T is the temperature
//                                 (N(0, I): z = T eps)
//   p = decoder(z)                decoder.tflite in LiteRT.js   (64, 28, 28, 1)  the Bernoulli means, drawn as grey levels
//
// The prior is tfvae.json's "prior", read from the export's prior.npz: N(0, I), or the mixture of diagonal
// Gaussians that the run learned (mog, or a VampPrior as the mixture of its posteriors at the pseudo-inputs).
//
// A conditional model (tfvae.json has "condition": "label" and "classes", the names by index) shows a class
// picker: every image of the grid, the strip and the manifold is of the class y picked, decoded with
// label y (the decoder's second input, (64,) int32), and z ~ p(z|y): component y of a class-conditional
// prior ("class_conditional": true), else the prior itself.
//
// Contract for tests and for pages that embed this one: once the first grid is drawn, <body> carries
//   data-tfvae-status="ready", data-tfvae-samples (images in the grid), data-tfvae-mean (the mean of all
//   their pixel probabilities), data-tfvae-model, data-tfvae-seed, data-tfvae-temperature, data-tfvae-ready-ms,
//   data-tfvae-z (the grid's z, 64 * D numbers row by row, comma-separated) and data-tfvae-components (each
//   image's mixture component, zero-based, comma-separated; all 0 for N(0, I)); a conditional model's page
//   also carries data-tfvae-label (the class index picked; its component is that of every image of a
//   class-conditional prior); a two-layer model's page (tfvae.json has "latent_layers": {"z2": D2, "z1": D1}) draws
//   each image's D = D2 + D1 numbers from the same seeded generator and decodes them as they are, but
//   data-tfvae-z then holds the grid's z2 (64 * D2 numbers) and data-tfvae-noise the noise of z1 (64 * D1);
// the status is "busy" while a later grid is being drawn, and on failure it is "error" with data-tfvae-error.
// The URL's query (?model=int8&seed=7&t=0.8, and &label=7 for a conditional model: an index or a class
// name) sets the starting state and follows every change, so a reload draws the same grid.

import {Tensor, loadAndCompile, loadLiteRt, supportsFeature} from "@litertjs/core";
import {drawPrior, interpolationLatents, manifoldLatents} from "./random.js";

const CONFIG_FILE = "tfvae.json";
const RUNTIME_WASM_DIR = "./litertjs/wasm/";
const TFLITE_IDENTIFIER = "TFL3"; // bytes 4..8 of every .tflite file

const body = document.body;
const element = (id) => document.getElementById(id);

/** Shows `message` in the page and in the contract's attributes; nothing else runs after it. */
function fail(message) {
  body.dataset.tfvaeStatus = "error";
  body.dataset.tfvaeError = message;
  const box = element("error");
  box.textContent = message;
  box.hidden = false;
  element("status").textContent = "The decoder is not running.";
  element("app").hidden = true;
}

/** One problem with a clear message for the page, as opposed to a bug. */
class PageError extends Error {}

async function fetchOk(url) {
  let response;
  try {
    response = await fetch(url);
  } catch (error) {
    throw new PageError(`could not fetch ${url}: ${error.message}`);
  }
  if (!response.ok) throw new PageError(`could not fetch ${url}: HTTP ${response.status} ${response.statusText}`);
  return response;
}

/** A compiled decoder with a fixed batch: decode(z) runs it as often as z needs, padding the last batch. */
class Decoder {
  constructor(name, file, compiled, batch, latentDim, pixels, conditional) {
    Object.assign(this, {name, file, compiled, batch, latentDim, pixels, conditional});
  }

  static async load(name, file, config) {
    const bytes = new Uint8Array(await (await fetchOk(file)).arrayBuffer());
    const identifier = String.fromCharCode(...bytes.subarray(4, 8));
    if (identifier !== TFLITE_IDENTIFIER) {
      throw new PageError(`${file} is not a TFLite model (no ${TFLITE_IDENTIFIER} identifier)`);
    }
    let compiled;
    try {
      compiled = await loadAndCompile(bytes, {accelerator: "wasm"});
    } catch (error) {
      throw new PageError(`LiteRT.js could not load ${file}: ${error.message || error}`);
    }
    const pixels = config.image_shape.reduce((a, b) => a * b, 1);
    const conditional = Array.isArray(config.classes);
    Decoder.check(file, compiled, config.batch, config.latent_dim, [config.batch, ...config.image_shape], conditional);
    return new Decoder(name, file, compiled, config.batch, config.latent_dim, pixels, conditional);
  }

  /**
   * Refuses a model that is not this export's web decoder (an encoder, another D, a dynamic batch); a conditional
   * export's decoder takes z and label [batch] int32, an unconditional one z alone.
   */
  static check(file, compiled, batch, latentDim, imageShape, conditional = false) {
    const signatures = Object.keys(compiled.signatures);
    const describe = (details) => details.map((d) => `${d.name} [${Array.from(d.shape)}] ${d.dtype}`).join(", ");
    const inputs = compiled.signatures.decode ? compiled.signatures.decode.getInputDetails() : [];
    const outputs = compiled.signatures.decode ? compiled.signatures.decode.getOutputDetails() : [];
    const same = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);
    const probs = outputs.find((d) => d.name === "probs");
    if (!compiled.signatures.decode) {
      throw new PageError(`${file} is not a tfvae decoder: it has no 'decode' signature (it has: ${signatures.join(", ")})`);
    }
    const z = inputs.find((d) => d.name === "z");
    const label = inputs.find((d) => d.name === "label");
    const expected = `z [${batch},${latentDim}] float32` + (conditional ? ` and label [${batch}] int32` : "");
    if (inputs.length !== (conditional ? 2 : 1) || !z || z.dtype !== "float32" ||
        !same(Array.from(z.shape), [batch, latentDim]) ||
        (conditional && (!label || label.dtype !== "int32" || !same(Array.from(label.shape), [batch])))) {
      throw new PageError(`${file} is not this export's web decoder: it takes ${describe(inputs)}, expected ${expected}`);
    }
    if (!probs || !same(Array.from(probs.shape), imageShape)) {
      throw new PageError(`${file} is not this export's web decoder: it returns ${describe(outputs)}, ` +
        `expected probs [${imageShape}]`);
    }
  }

  /** z: (n * D) float32 [, label: the class of every image, for a conditional decoder] -> the Bernoulli means,
   * (n * pixels) float32. */
  async decode(z, label = 0) {
    const n = z.length / this.latentDim;
    const probs = new Float32Array(n * this.pixels);
    for (let start = 0; start < n; start += this.batch) {
      const count = Math.min(this.batch, n - start);
      const padded = new Float32Array(this.batch * this.latentDim); // the rest stays 0: decoded, then dropped
      padded.set(z.subarray(start * this.latentDim, (start + count) * this.latentDim));
      const inputs = {z: new Tensor(padded, [this.batch, this.latentDim])};
      if (this.conditional) inputs.label = new Tensor(new Int32Array(this.batch).fill(label), [this.batch]);
      const outputs = await this.compiled.run("decode", inputs);
      try {
        probs.set(outputs.probs.toTypedArray().subarray(0, count * this.pixels), start * this.pixels);
      } finally {
        for (const tensor of Object.values(inputs)) tensor.delete(); // LiteRT.js tensors live in WebAssembly memory
        for (const tensor of Object.values(outputs)) tensor.delete();
      }
    }
    return probs;
  }
}

/** Draws n images of (height, width) Bernoulli means on `canvas`, `columns` to a row; white is p = 1. */
function drawImages(canvas, probs, n, columns, height, width) {
  const rows = Math.ceil(n / columns);
  canvas.width = columns * width;
  canvas.height = rows * height;
  const context = canvas.getContext("2d");
  const image = context.createImageData(canvas.width, canvas.height);
  for (let k = 0; k < n; k++) {
    const top = Math.floor(k / columns) * height;
    const left = (k % columns) * width;
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const level = Math.round(255 * Math.min(1, Math.max(0, probs[(k * height + y) * width + x])));
        const at = 4 * ((top + y) * canvas.width + left + x);
        image.data[at] = image.data[at + 1] = image.data[at + 2] = level;
        image.data[at + 3] = 255;
      }
    }
  }
  context.putImageData(image, 0, 0);
}

/**
 * Refuses a "prior" in tfvae.json that this page cannot sample, with what is wrong; returns a one-line description.
 * N(0, I) is {"family": "normal", "loc": 0, "scale": 1}; a mixture has logits (K,), loc (K, D), scale (K, D).
 */
function checkPrior(prior, latentDim, classes = undefined) {
  const where = `${CONFIG_FILE}'s prior`;
  if (!prior || typeof prior !== "object") throw new PageError(`${CONFIG_FILE} names no prior; export the page again`);
  if (prior.family === "normal") {
    if (prior.loc !== 0 || prior.scale !== 1) {
      throw new PageError(`${where} is a normal other than N(0, I), which this page does not sample: ` +
        `${JSON.stringify(prior)}`);
    }
    return `N(0, I_${latentDim})`;
  }
  if (prior.family !== "mixture") {
    throw new PageError(`${where} has family ${JSON.stringify(prior.family)}; this page samples "normal" and "mixture"`);
  }
  const finite = (row) => Array.isArray(row) && row.every((v) => typeof v === "number" && Number.isFinite(v));
  const {logits, loc, scale} = prior;
  if (!finite(logits) || logits.length < 1) {
    throw new PageError(`${where} is a mixture whose logits are not a list of K finite numbers`);
  }
  const k = logits.length;
  for (const [name, rows] of [["loc", loc], ["scale", scale]]) {
    if (!Array.isArray(rows) || rows.length !== k || !rows.every((row) => finite(row) && row.length === latentDim)) {
      throw new PageError(`${where} is a mixture whose ${name} is not (K, D) = (${k}, ${latentDim}) finite numbers`);
    }
  }
  if (!scale.every((row) => row.every((v) => v > 0))) throw new PageError(`${where} has a scale that is not positive`);
  if (prior.class_conditional) {
    if (!Array.isArray(classes) || classes.length !== k) {
      throw new PageError(`${where} has one component per class, ${k}, but ${CONFIG_FILE} lists ` +
        `${Array.isArray(classes) ? classes.length : "no"} classes`);
    }
    return `p(z|y), a diagonal Gaussian per class (${k}) in D = ${latentDim}`;
  }
  const trained = {mog: "a learned mixture of Gaussians", vamp: "a VampPrior"}[prior.trained] || "a mixture prior";
  return `${trained}: a mixture of ${k} diagonal Gaussian${k === 1 ? "" : "s"} in D = ${latentDim}`;
}

function mean(values) {
  let sum = 0;
  for (const value of values) sum += value;
  return sum / values.length;
}

/** The page's state, its controls and the three pictures. */
class Page {
  constructor(config, runtime) {
    this.config = config;
    this.runtime = runtime;
    this.decoders = {};
    this.queue = Promise.resolve(); // one drawing at a time, in the order asked
    this.ends = [0, 1]; // the interpolation strip runs from grid sample ends[0] to ends[1]
    this.nextEnd = 0;
    const query = new URLSearchParams(location.search);
    this.model = query.get("model") || config.default_model;
    this.seed = Number(query.get("seed") || 0);
    this.temperature = Number(query.get("t") || 1);
    this.classes = Array.isArray(config.classes) ? config.classes : null; // names by index; null: unconditional
    if (this.classes) {
      const asked = query.get("label") ?? "0";
      const index = /^\d+$/.test(asked) ? Number(asked) : this.classes.indexOf(asked);
      this.label = this.classes.includes(asked) ? this.classes.indexOf(asked) : index;
      if (!(this.label >= 0 && this.label < this.classes.length)) {
        throw new PageError(`unknown label '${asked}' in the address; choose an index from 0 to ` +
          `${this.classes.length - 1} or a class name: ${this.classes.join(", ")}`);
      }
    }
    if (!(this.model in config.models)) {
      throw new PageError(`unknown model '${this.model}' in the address; choose one of: ${Object.keys(config.models).join(", ")}`);
    }
    if (!Number.isInteger(this.seed) || this.seed < 0 || this.seed >= 2 ** 32) {
      throw new PageError(`the seed in the address must be an integer from 0 to 4294967295, got '${query.get("seed")}'`);
    }
    if (!(this.temperature > 0 && this.temperature <= 10)) {
      throw new PageError(`the temperature in the address must be a number in (0, 10], got '${query.get("t")}'`);
    }
  }

  async decoder(name) {
    if (!this.decoders[name]) this.decoders[name] = await Decoder.load(name, this.config.models[name].file, this.config);
    return this.decoders[name];
  }

  get columns() {
    return this.config.grid.columns;
  }

  /** Draws everything for the current state; `all` also redraws the manifold (a new model). */
  async draw(all) {
    const {batch, latent_dim: latentDim, image_shape: [height, width]} = this.config;
    const decoder = await this.decoder(this.model);
    const {z, components} = this.drawLatents(batch, latentDim);
    this.z = z;
    const probs = await decoder.decode(this.z, this.label);
    drawImages(element("grid"), probs, batch, this.columns, height, width);
    await this.drawStrip(decoder);
    if (all && this.config.manifold) {
      const {side, eps} = this.config.manifold;
      drawImages(element("manifold"), await decoder.decode(manifoldLatents(side, eps), this.label), side * side, side,
        height, width);
    }
    Object.assign(body.dataset, {
      tfvaeSamples: String(batch),
      tfvaeMean: String(mean(probs)),
      tfvaeModel: this.model,
      tfvaeSeed: String(this.seed),
      tfvaeTemperature: String(this.temperature),
      tfvaeZ: Array.from(z).join(","),
      tfvaeComponents: Array.from(components).join(","),
    });
    const layers = this.config.latent_layers;
    if (layers) {  // z = [z2, e1] per row: z2 in data-tfvae-z, the noise of z1 in data-tfvae-noise
      const rows = Array.from({length: batch}, (_, i) => Array.from(z.slice(i * latentDim, (i + 1) * latentDim)));
      body.dataset.tfvaeZ = rows.map((row) => row.slice(0, layers.z2).join(",")).join(",");
      body.dataset.tfvaeNoise = rows.map((row) => row.slice(layers.z2).join(",")).join(",");
    }
    if (this.classes) body.dataset.tfvaeLabel = String(this.label);
    const model = this.config.models[this.model];
    const name = this.classes ? this.classes[this.label] : "";
    const drawing = !this.classes ? "" : name === String(this.label) ? ` Class ${name}.` : ` Class ${this.label}: ${name}.`;
    element("status").textContent =
      `Running ${model.file} (${model.description}) with LiteRT.js ${this.runtime.version} on ${this.runtime.build}. ` +
      (this.config.latent_layers ? `Two latent layers: z2 of ${this.config.latent_layers.z2}, z1 of ` +
        `${this.config.latent_layers.z1} (drawn from its noise).` : `D = ${latentDim}.`) + drawing;
    const label = this.classes ? `&label=${this.label}` : "";
    history.replaceState(null, "", `?model=${this.model}&seed=${this.seed}&t=${this.temperature}${label}`);
  }

  /**
   * The grid's z and each image's component: drawPrior on the page's prior, or for a conditional model p(z|y),
   * component y of a class-conditional prior (a one-component mixture, drawn as drawPrior draws mixtures).
   */
  drawLatents(batch, latentDim) {
    const prior = this.config.prior;
    if (!this.classes || !prior.class_conditional) {
      return drawPrior(this.seed, batch, latentDim, this.temperature, prior);
    }
    const y = this.label;
    const component = {family: "mixture", logits: [0], loc: [prior.loc[y]], scale: [prior.scale[y]]};
    const {z} = drawPrior(this.seed, batch, latentDim, this.temperature, component);
    return {z, components: new Int32Array(batch).fill(y)};
  }

  async drawStrip(decoder) {
    const {latent_dim: latentDim, image_shape: [height, width], interpolation: {steps}} = this.config;
    const [a, b] = this.ends;
    const za = this.z.subarray(a * latentDim, (a + 1) * latentDim);
    const zb = this.z.subarray(b * latentDim, (b + 1) * latentDim);
    drawImages(element("strip"), await decoder.decode(interpolationLatents(za, zb, steps), this.label), steps, steps,
      height, width);
    const where = (k) => `${k + 1} (row ${Math.floor(k / this.columns) + 1}, column ${(k % this.columns) + 1})`;
    element("strip-caption").textContent = `From sample ${where(a)} to sample ${where(b)} of the grid, ` +
      `in ${steps} steps along the straight line between their z. Click two samples in the grid to choose others.`;
  }

  /** Runs `work` after the drawings already asked for; the page is "busy" meanwhile and "ready" after. */
  schedule(work) {
    this.queue = this.queue.then(async () => {
      if (body.dataset.tfvaeStatus === "error") return; // a failure is final: its message stays
      body.dataset.tfvaeStatus = "busy";
      await work();
      body.dataset.tfvaeReadyMs ??= String(Math.round(performance.now())); // the first grid: time since navigation
      body.dataset.tfvaeStatus = "ready";
    }).catch((error) => fail(error instanceof PageError ? error.message : `unexpected error: ${error.stack || error}`));
    return this.queue;
  }

  bindControls() {
    const models = element("model");
    for (const [name, model] of Object.entries(this.config.models)) {
      models.add(new Option(`${name}: ${model.file}`, name, false, name === this.model));
    }
    const seed = element("seed");
    const temperature = element("temperature");
    seed.value = String(this.seed);
    temperature.value = String(this.temperature);
    element("temperature-value").textContent = this.temperature.toFixed(2);

    models.addEventListener("change", () => this.schedule(async () => {
      this.model = models.value;
      await this.draw(true);
    }));
    if (this.classes) {
      const labels = element("label");
      this.classes.forEach((name, k) => {
        const text = name === String(k) ? name : `${k}: ${name}`; // "7" for MNIST's digits, "0: T-shirt/top" otherwise
        labels.add(new Option(text, String(k), false, k === this.label));
      });
      element("label-control").hidden = false;
      labels.addEventListener("change", () => this.schedule(async () => {
        this.label = Number(labels.value);
        await this.draw(true); // the manifold too: it is the class's
      }));
    }
    seed.addEventListener("change", () => {
      const value = Number(seed.value);
      if (!Number.isInteger(value) || value < 0 || value >= 2 ** 32) {
        seed.value = String(this.seed); // keep the grid that is shown, and say why
        element("seed-note").textContent = "The seed is an integer from 0 to 4294967295.";
        return;
      }
      element("seed-note").textContent = "";
      this.schedule(async () => {
        this.seed = value;
        await this.draw(false);
      });
    });
    temperature.addEventListener("input", () => {
      element("temperature-value").textContent = Number(temperature.value).toFixed(2);
    });
    temperature.addEventListener("change", () => this.schedule(async () => {
      this.temperature = Number(temperature.value);
      element("temperature-value").textContent = this.temperature.toFixed(2);
      await this.draw(false);
    }));
    element("new-samples").addEventListener("click", () => this.schedule(async () => {
      this.seed = (this.seed + 1) % 2 ** 32;
      seed.value = String(this.seed);
      await this.draw(false);
    }));
    element("grid").addEventListener("click", (event) => {
      const canvas = event.currentTarget;
      const [height, width] = this.config.image_shape;
      const x = Math.floor((event.offsetX / canvas.clientWidth) * canvas.width / width);
      const y = Math.floor((event.offsetY / canvas.clientHeight) * canvas.height / height);
      const k = y * this.columns + x;
      if (k < 0 || k >= this.config.batch) return;
      this.ends[this.nextEnd] = k;
      this.nextEnd = 1 - this.nextEnd;
      this.schedule(async () => this.drawStrip(await this.decoder(this.model)));
    });
  }
}

async function main() {
  if (location.protocol === "file:") {
    throw new PageError("this page must be served over HTTP, not opened as a file: " +
      "run `python -m http.server` in its folder and open http://127.0.0.1:8000/");
  }
  if (typeof WebAssembly !== "object" || typeof WebAssembly.instantiate !== "function") {
    throw new PageError("this browser has no WebAssembly (or it is turned off), " +
      "and the decoder runs in WebAssembly: open the page in a browser with WebAssembly enabled");
  }
  const config = await (await fetchOk(CONFIG_FILE)).json();
  if (config.classes !== undefined && (config.condition !== "label" || !Array.isArray(config.classes) ||
      config.classes.length < 1 || !config.classes.every((name) => typeof name === "string"))) {
    throw new PageError(`${CONFIG_FILE}'s classes are not a list of class names with "condition": "label"; ` +
      "export the page again");
  }
  const prior = checkPrior(config.prior, config.latent_dim, config.classes);
  const page = new Page(config, {});
  try {
    await loadLiteRt(RUNTIME_WASM_DIR);
  } catch (error) {
    throw new PageError(`LiteRT.js could not start: ${error.message || error}`);
  }
  page.runtime = {
    version: config.runtime.version,
    build: (await supportsFeature("relaxedSimd")) ? "WebAssembly with relaxed SIMD (CPU)" : "WebAssembly (CPU, compatible build)",
  };
  element("prior-caption").textContent = config.prior.family === "normal"
    ? "z = T \u00b7 \u03b5, \u03b5 ~ N(0, I): the prior N(0, I) the model was trained with."
    : config.prior.class_conditional
    ? `The prior is the model's own, ${prior}, from the export's prior.npz: every image of class y has ` +
      "z = loc_y + T \u00b7 scale_y \u00b7 \u03b5, \u03b5 ~ N(0, I)."
    : `The prior is the model's own, ${prior}, from the export's prior.npz: each image picks a component k ` +
      "with the mixture's weights, then z = loc_k + T \u00b7 scale_k \u00b7 \u03b5, \u03b5 ~ N(0, I).";
  if (config.classes) {
    element("prior-caption").textContent += " The model is conditional: every image is of the class picked, " +
      "decoded with its label.";
  }
  if (config.manifold) {
    element("manifold-section").hidden = false;
    // The grid is N(0, I)'s, as manifold.png draws it for every prior; for a learned prior, say how much
    // of its mass the square holds, so that an empty-looking region is read as such.
    const mass = config.manifold.prior_mass;
    const learned = config.prior.family === "normal" ? "" : " These are the quantiles of N(0, 1), not of the " +
      "learned prior" + (typeof mass === "number" ? `: the square holds ${(100 * mass).toFixed(1)}% of its mass.` : ".");
    element("manifold-caption").textContent = `Decoder means on a ${config.manifold.side} x ${config.manifold.side} ` +
      `grid of z at the normal quantile of probabilities from ${config.manifold.eps} to ${1 - config.manifold.eps} ` +
      "(z1 left to right, z2 top to bottom from high to low), as manifold.png shows it." + learned;
  }
  page.bindControls();
  element("app").hidden = false;
  await page.schedule(() => page.draw(true));
}

main().catch((error) => fail(error instanceof PageError ? error.message : `unexpected error: ${error.stack || error}`));
