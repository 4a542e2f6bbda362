"""Step 4: surgery. Join latents of SAEs exactly (stitch, remove, swap, Frankenstein); the rules per
architecture live in sae_lens_stitch.registry."""
