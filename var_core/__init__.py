"""The models: multi-scale residual VQVAE and the VAR transformer (official layout)."""
