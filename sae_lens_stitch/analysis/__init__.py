"""Steps 2-3: match latents across SAEs, classify them (novel / reconstruction), group them into
families, measure single-latent insert effects."""
