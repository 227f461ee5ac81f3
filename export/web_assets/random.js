// The page's latents: a seeded generator, standard normals, draws from the prior (N(0, I) or a mixture of
// diagonal Gaussians), and the normal quantile for the manifold.
// Plain functions, no DOM, no runtime: tests import this module on its own.
//
// Generator: mulberry32. Its state is a uint32 set to the seed; each draw adds 0x6D2B79F5 to the state
// and returns a 32-bit hash of it, x. Uniforms are u = (x + 0.5) / 2^32, strictly inside (0, 1), so the
// logarithm below is finite. Standard normals come in pairs by Box-Muller:
//   r = sqrt(-2 ln u1),  z = r cos(2 pi u2),  z' = r sin(2 pi u2)
//
// The stream of a grid of n latents of dimension D, from one generator seeded with the seed:
//   1. eps: the first n * D normals, row by row (image i gets normals i*D .. i*D + D - 1); they use the
//      first 2 * ceil(n * D / 2) uniforms (with n * D odd, the last sine is dropped).
//   2. a mixture prior only: the next n uniforms, u_i for image i, pick its component by inverse CDF:
//      k_i = the number of c_k <= u_i * c_K, where c_k = pi_1 + ... + pi_k, pi = softmax(logits)
//      (capped at K - 1, zero-based), as tfvae.mixture.Mixture.transform picks it.
//   z_i = loc_k + T * scale_k * eps_i  (N(0, I): z_i = T * eps_i; T is the temperature)
// So N(0, I) pages draw what they always drew, and a mixture page's eps are the N(0, I) page's. It is not
// numpy's generator: the same seed always gives the same page, but not the same z as `tfvae sample --seed`.

const TWO_TO_32 = 4294967296;

/**
 * mulberry32 seeded with `seed` (taken modulo 2^32).
 * @param {number} seed a non-negative integer.
 * @return {function(): number} each call gives the next uint32.
 */
export function mulberry32(seed) {
  let state = seed >>> 0;
  return function next() {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** The uniforms (x + 0.5) / 2^32 of mulberry32(seed), one per call, strictly inside (0, 1). */
export function uniforms(seed) {
  const next = mulberry32(seed);
  return () => (next() + 0.5) / TWO_TO_32;
}

/** `count` standard normals by Box-Muller from `uniform`, which gives 2 * ceil(count / 2) uniforms. */
function boxMuller(uniform, count) {
  const normals = new Float64Array(count);
  for (let i = 0; i < count; i += 2) {
    const r = Math.sqrt(-2 * Math.log(uniform()));
    const angle = 2 * Math.PI * uniform();
    normals[i] = r * Math.cos(angle);
    if (i + 1 < count) normals[i + 1] = r * Math.sin(angle);
  }
  return normals;
}

/**
 * `count` standard normals from mulberry32(seed) by Box-Muller, as described above.
 * @return {Float64Array}
 */
export function standardNormals(seed, count) {
  return boxMuller(uniforms(seed), count);
}

/**
 * The cumulative mixture weights c_1 .. c_K of softmax(logits) (c_K = 1 up to round-off).
 * @param {number[]} logits (K,)
 * @return {Float64Array}
 */
export function mixtureCdf(logits) {
  const top = Math.max(...logits);
  const cdf = new Float64Array(logits.length);
  let total = 0;
  logits.forEach((logit, k) => {
    total += Math.exp(logit - top);
    cdf[k] = total;
  });
  return cdf.map((c) => c / total);
}

/** The component whose CDF interval holds u: the number of c_k <= u * c_K, capped at K - 1 (zero-based). */
export function pickComponent(cdf, u) {
  const target = u * cdf[cdf.length - 1];
  let low = 0;
  let high = cdf.length; // binary search for the first c_k > target
  while (low < high) {
    const middle = (low + high) >> 1;
    if (cdf[middle] <= target) low = middle + 1;
    else high = middle;
  }
  return Math.min(low, cdf.length - 1);
}

/**
 * n latents z ~ p(z) from the seed, each component's scale times `temperature`, in the stream order above.
 * Temperature 1 samples the prior itself; below 1 stays nearer its modes.
 * @param {object|undefined} prior tfvae.json's "prior": {"family": "normal"} (or undefined) for N(0, I_D);
 *   {"family": "mixture", "logits" (K,), "loc" (K, D), "scale" (K, D)} for a mixture of diagonal Gaussians.
 * @return {{z: Float32Array, components: Int32Array}} z (n * D) row by row, and each image's component
 *   (all 0 for N(0, I)).
 */
export function drawPrior(seed, n, latentDim, temperature = 1, prior = undefined) {
  const uniform = uniforms(seed);
  const eps = boxMuller(uniform, n * latentDim);
  const z = new Float32Array(n * latentDim);
  const components = new Int32Array(n);
  if (!prior || prior.family === "normal") {
    for (let i = 0; i < z.length; i++) z[i] = temperature * eps[i];
    return {z, components};
  }
  const cdf = mixtureCdf(prior.logits);
  for (let i = 0; i < n; i++) {
    const k = pickComponent(cdf, uniform());
    const loc = prior.loc[k];
    const scale = prior.scale[k];
    components[i] = k;
    for (let j = 0; j < latentDim; j++) z[i * latentDim + j] = loc[j] + temperature * scale[j] * eps[i * latentDim + j];
  }
  return {z, components};
}

/**
 * n latents z = temperature * eps, eps ~ N(0, I_D), from the seed (or from `prior`, see drawPrior):
 * (n * D) float32, row by row.
 */
export function priorLatents(seed, n, latentDim, temperature = 1, prior = undefined) {
  return drawPrior(seed, n, latentDim, temperature, prior).z;
}

/**
 * `steps` points on the straight line from z_a to z_b (each of length D), z_a first: (steps * D) float32.
 */
export function interpolationLatents(za, zb, steps) {
  const d = za.length;
  const z = new Float32Array(steps * d);
  for (let s = 0; s < steps; s++) {
    const t = steps === 1 ? 0 : s / (steps - 1);
    for (let j = 0; j < d; j++) z[s * d + j] = (1 - t) * za[j] + t * zb[j];
  }
  return z;
}

// Acklam's rational approximation of the normal quantile (relative error below 1.15e-9, far below float32's).
const A = [-3.969683028665376e1, 2.209460984245205e2, -2.759285104469687e2, 1.38357751867269e2,
  -3.066479806614716e1, 2.506628277459239];
const B = [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1,
  -1.328068155288572e1];
const C = [-7.784894002430293e-3, -3.223964580411365e-1, -2.400758277161838, -2.549732539343734,
  4.374664141464968, 2.938163982698783];
const D = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
const P_LOW = 0.02425;

/**
 * The standard normal's percent-point function (inverse CDF) at p in (0, 1).
 */
export function normalQuantile(p) {
  if (!(p > 0 && p < 1)) throw new RangeError(`normalQuantile needs 0 < p < 1, got ${p}`);
  if (p < P_LOW) {
    const q = Math.sqrt(-2 * Math.log(p));
    return (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5]) /
      ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1);
  }
  if (p > 1 - P_LOW) return -normalQuantile(1 - p);
  const q = p - 0.5;
  const r = q * q;
  return (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q /
    (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1);
}

/**
 * The side x side grid of z at the normal quantile of evenly spaced probabilities in [eps, 1 - eps]
 * (Kingma & Welling, Fig. 4b), as tfvae.plots.manifold_latents draws manifold.png: rows from high z2
 * to low z2, z1 rising along each row. (side * side * 2) float32.
 */
export function manifoldLatents(side, eps) {
  const values = [];
  for (let i = 0; i < side; i++) {
    const p = side === 1 ? eps : eps + (1 - 2 * eps) * (i / (side - 1));
    values.push(normalQuantile(p));
  }
  const z = new Float32Array(side * side * 2);
  for (let row = 0; row < side; row++) {
    for (let column = 0; column < side; column++) {
      const k = row * side + column;
      z[2 * k] = values[column];
      z[2 * k + 1] = values[side - 1 - row];
    }
  }
  return z;
}
