"""Taking the decoder to the edge: SavedModel and TFLite exports, and a sampler that needs no TensorFlow.

    tfvae.export.layout     names of the signatures, tensors and files of an export (no TensorFlow)
    tfvae.export.litert     TFLite encoder and decoder run by the LiteRT interpreter (numpy + ai-edge-litert)
    tfvae.export.sampler    ancestral sampling from any decoder, PNG and .npy output (no TensorFlow)
    tfvae.export.savedmodel the tensors-in, tensors-out tf.Module and SavedModel / Keras decoders (TensorFlow)
    tfvae.export.exporter   `export_run`: SavedModel, TFLite, quantized decoders and manifest.json (TensorFlow)
    tfvae.export.benchmark  `python -m tfvae.export.benchmark EXPORT_DIR`: the figures for BENCHMARKS.md

This file stays empty of imports: `import tfvae.export` and the on-device
modules must never import TensorFlow.
"""
