"""Taking the decoder to the edge: SavedModel and TFLite exports, and a sampler that needs no TensorFlow.

    tfvae.export.layout     names of the signatures, tensors and files of an export (no TensorFlow)
    tfvae.export.litert     TFLite encoder and decoder run by the LiteRT interpreter (numpy + ai-edge-litert)
    tfvae.export.sampler    ancestral sampling from any decoder, PNG and .npy output (no TensorFlow)
    tfvae.export.savedmodel the tensors-in, tensors-out tf.Module and SavedModel / Keras decoders (TensorFlow)
    tfvae.export.exporter   `export_run`: SavedModel, TFLite, quantized decoders and manifest.json (TensorFlow)

This file stays empty of imports: `import tfvae.export` and the on-device
modules must never import TensorFlow. An export's figures (sizes, quantization
cost, decode latency, `tfvae sample` wall time) are the `sample` section of
`tfvae bench --export-dir EXPORT_DIR` (tfvae.bench).
"""
