"""Training a substitute component against the one it replaces: the text path (DistilT5 + ContextAdapter, on
prompts only) and the VAE decoder (TAEHV, on reconstructions or the native decoder's outputs)."""
