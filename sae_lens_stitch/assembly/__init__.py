"""Step 4b: assembly. Build the best SAE a family of widths can make without training: the
exact quadratic objective (:mod:`.objective`), closed-form refit of decoder scales and output
bias (:mod:`.refit`), and greedy selection under width and L0 budgets (:mod:`.assemble`)."""
