"""Step 1: load SAEs (SAE-Lens releases, Hub repos, local folders), save them atomically, publish them
to the Hub with a model card."""
