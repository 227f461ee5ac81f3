"""Analyses of a trained run: how good it is, and where its gap goes. Measurements of the model, not of speed.

  gaps.py     the inference gaps (Cremer et al. 2018): the gap between a run's ELBO and log p(x), split into
              the amortisation gap (the encoder's) and the approximation gap (the posterior family's)
  quality.py  time to quality: the training time until a run's test log p(x) passed given levels

`tfvae analyze gaps|quality --run-dir RUN` runs each in a process of its own (tfvae.bench.analyses, as
`tfvae bench --sections gaps|quality` does); from Python: `inference_gaps(config, vae, images, refine_steps=...)`,
`time_to_quality(run_dir)`.
"""
