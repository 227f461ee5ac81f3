"""The `tfvae` command line, installed as the `tfvae.cli` package (a thin shell over the library)."""
