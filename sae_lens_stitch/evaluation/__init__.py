"""Step 5: metrics of an SAE on activations (and in a language model), the incremental curves, the
sparse activation cache, reading activation files."""
