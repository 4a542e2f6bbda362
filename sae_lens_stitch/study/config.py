"""What a study does: its steps and options, from flags or a TOML/YAML file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sae_lens_stitch.errors import StudyError

StepName = Literal[
    "evaluate",
    "compare",
    "classify",
    "effects",
    "stitch",
    "curves",
    "frankenstein",
    "assemble",
    "report",
]
STEPS: tuple[StepName, ...] = get_args(StepName)
"""The steps of a study, in the order they run. ``classify`` also finds the families."""


class StudyConfig(BaseModel):
    """Options of :func:`~sae_lens_stitch.study.run.run_study` (every field has a default)."""

    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(default=0.7, ge=-1.0, le=1.0)
    """Cosine threshold: a large latent below it is novel (by cosine)."""
    eval_fraction: float = Field(default=0.5, gt=0.0, lt=1.0)
    """Share of the tokens (the last ones) every figure is reported on; the rest are the fit
    tokens that assembly and refits are fitted on."""
    max_tokens: int | None = Field(default=None, ge=2)
    """Use at most this many tokens of the activations (the first ones)."""
    width: int | None = Field(default=None, ge=1)
    """Width budget of the assembled SAE (default: the second-smallest SAE's width)."""
    l0: float | None = Field(default=None, gt=0.0)
    """L0 budget of the assembled SAE (mean active latents on the fit tokens)."""
    significance: float = Field(default=2.0, ge=0.0)
    """Assembly's significance test (standard errors; 0: take any gain)."""
    refit: bool = True
    """Refit the assembled SAE's decoder scales (and report refits in the Pareto plane)."""
    agreement: bool = False
    """In ``classify``, also the agreement of the cosine view with activation correlation
    (:func:`~sae_lens_stitch.analysis.agreement.view_agreement`; one more pass of each pair
    over the evaluation tokens)."""
    only: list[StepName] | None = None
    """Run only these steps (and reuse the finished ones they need)."""
    skip: list[StepName] = Field(default_factory=list)
    """Steps not to run."""
    batch_size: int = Field(default=4096, ge=1)
    """Tokens per batch in passes over the data."""

    @field_validator("only", "skip")
    @classmethod
    def _no_repeats(cls, value: list[StepName] | None) -> list[StepName] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError(f"a step is listed twice: {value}")
        return value

    def steps(self) -> list[StepName]:
        """The steps to run, in order."""
        only = STEPS if self.only is None else self.only
        return [s for s in STEPS if s in only and s not in self.skip]

    def fingerprint_fields(self) -> dict[str, Any]:
        """The options that change results (not which steps run)."""
        return self.model_dump(mode="json", exclude={"only", "skip"})


def load_config(path: str | os.PathLike[str], **overrides: Any) -> StudyConfig:
    """A :class:`StudyConfig` from a ``.toml``, ``.yaml``/``.yml`` or ``.json`` file (its
    top level, or its ``[study]`` table), with ``overrides`` (flags given) on top."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise StudyError(f"study config {str(file)!r} does not exist")
    text = file.read_text(encoding="utf-8")
    try:
        if file.suffix == ".toml":
            import tomllib

            data: Any = tomllib.loads(text)
        elif file.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        elif file.suffix == ".json":
            data = json.loads(text)
        else:
            raise StudyError(
                f"study config {str(file)!r}: expected a .toml, .yaml, .yml or .json file"
            )
    except StudyError:
        raise
    except Exception as err:
        raise StudyError(f"study config {str(file)!r} cannot be read: {err}") from None
    if not isinstance(data, dict):
        raise StudyError(f"study config {str(file)!r} must hold a table of options")
    data = data.get("study", data)
    if not isinstance(data, dict):
        raise StudyError(f"study config {str(file)!r}: [study] must be a table of options")
    return make_config({**data, **overrides}, source=str(file))


def make_config(options: dict[str, Any], *, source: str = "options") -> StudyConfig:
    """A :class:`StudyConfig` from a mapping; bad values raise :class:`StudyError` naming them."""
    try:
        return StudyConfig.model_validate(options)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']} (got {e.get('input')!r})"
            for e in err.errors()
        )
        raise StudyError(f"study {source}: {problems}") from None
