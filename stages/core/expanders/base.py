"""What every seed expander shares: its config base class, input checks and lifecycle.

An expander turns sparse seeds into denser supervision using the segmentation
network's current probabilities (and, for the feature-graph methods, its
features). Stages only see ``exp(features, probs, seeds, present)`` so any
expander can replace any other without touching the training loop.

The supervision is a (B, h, w) label map (255 = none) or, for an expander whose
rule can give a position two classes (the published graph cut), a (B, K+1, h, w)
bool multi-hot map; the seeding loss takes either, and :func:`to_label_map`
turns either into one label per position for writing or evaluating.
"""
from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ..cues.crf import CrfConfig
from ..errors import DgcnError
from ..maps import IGNORE, resize_scores, supervision_mask
from ..registry import Registry

#: name -> expander class; ``build_expander`` is the way in for callers.
EXPANDERS: Registry[type["Expander"]] = Registry("expander")


class ExpanderOptionError(DgcnError, ValueError):
    """An unknown option name or an out-of-range value for an expander."""


@dataclass
class ExpanderConfig:
    """Base of every expander's options; subclasses add fields with the paper's defaults."""

    def validate(self) -> None:
        """Subclasses raise ``ExpanderOptionError`` for values that cannot work."""

    def to_dict(self) -> dict[str, Any]:
        # Stages store this in artifact attributes so a label file says how it was made.
        return dataclasses.asdict(self)

    @classmethod
    def from_kwargs(cls, expander: str, **kwargs: Any) -> "ExpanderConfig":
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(kwargs) - set(names))
        if unknown:
            raise ExpanderOptionError(
                f"expander {expander!r} has no option(s) {', '.join(map(repr, unknown))}; "
                f"valid options: {', '.join(names) or '(none)'}"
            )
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        for key, value in kwargs.items():
            kwargs[key] = _coerce(expander, key, value, types[key])
        cfg = cls(**kwargs)
        cfg.validate()
        return cfg


def _coerce(expander: str, key: str, value: Any, kind: Any) -> Any:
    """An option value as its field's type (annotations are strings here), or a one-line error."""
    kind = getattr(kind, "__name__", kind)
    if kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool) or (isinstance(value, float) and value.is_integer())
        value = int(value) if ok else value
    elif kind == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, str)
    if not ok:
        want = {"bool": "true or false", "int": "an integer", "float": "a number"}.get(kind, "text")
        raise ExpanderOptionError(f"expander {expander!r}: option {key} must be {want}, got {value!r}")
    return value


def _require(cond: bool, expander: str, msg: str) -> None:
    if not cond:
        raise ExpanderOptionError(f"expander {expander!r}: {msg}")


class Expander(ABC):
    """Callable ``(features, probs, seeds, present) -> supervision``; see the package docstring.

    Subclasses set ``name``, ``config_class`` and implement ``_expand``; this
    class checks shapes once so that every expander fails the same way on bad input.
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type[ExpanderConfig]] = ExpanderConfig
    needs_features: ClassVar[bool] = False

    @property
    def refine_crf(self) -> CrfConfig | None:
        """The dense CRF whose output Q this expander wants as ``probs`` instead of H
        (DSRG grows on its own CRF of H), on the image at score-map size; None: H itself.
        The caller runs it (``cues.crf.submit_batch``), reusing the boundary loss's Q
        when the two configurations are equal."""
        return None

    @property
    def needs_refined_probs(self) -> bool:
        """True when ``probs`` should be a dense-CRF refinement of H (see :attr:`refine_crf`)."""
        return self.refine_crf is not None

    def __init__(self, config: ExpanderConfig | None = None) -> None:
        if config is None:
            config = self.config_class()
        if not isinstance(config, self.config_class):
            raise ExpanderOptionError(
                f"expander {self.name!r} needs a {self.config_class.__name__}, "
                f"got {type(config).__name__}"
            )
        config.validate()
        self.config = config

    def __call__(
        self,
        features: torch.Tensor | None,
        probs: torch.Tensor,
        seeds: torch.Tensor,
        present: torch.Tensor,
    ) -> torch.Tensor:
        self._check(features, probs, seeds, present)
        # full precision even inside a training step's bf16 autocast: neighbour
        # ranking and propagation in bf16 would reorder near-tied distances
        with torch.no_grad(), torch.autocast(device_type=probs.device.type, enabled=False):
            out = self._expand(
                None if features is None else features.detach().float(), probs.detach().float(), seeds, present.bool()
            )
        if out.dim() == 4:  # multi-hot
            return out.to(device=seeds.device, dtype=torch.bool)
        return out.to(device=seeds.device, dtype=torch.long)

    @abstractmethod
    def _expand(
        self,
        features: torch.Tensor | None,
        probs: torch.Tensor,
        seeds: torch.Tensor,
        present: torch.Tensor,
    ) -> torch.Tensor:
        """Inputs already checked, detached and on their own devices; returns (B, h, w)
        labels or (B, K+1, h, w) multi-hot."""

    def close(self) -> None:
        """Release worker processes; a no-op for expanders that start none."""

    def __enter__(self) -> "Expander":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    def _check(
        self,
        features: torch.Tensor | None,
        probs: torch.Tensor,
        seeds: torch.Tensor,
        present: torch.Tensor,
    ) -> None:
        who = f"expander {self.name!r}"
        if probs.dim() != 4:
            raise ValueError(f"{who}: probs must be (B, K+1, h, w), got {tuple(probs.shape)}")
        b, k1, h, w = probs.shape
        if tuple(seeds.shape) != (b, h, w):
            raise ValueError(f"{who}: seeds must be {(b, h, w)}, got {tuple(seeds.shape)}")
        if seeds.dtype.is_floating_point or seeds.dtype == torch.bool:
            raise ValueError(f"{who}: seeds must be an integer tensor, got {seeds.dtype}")
        if tuple(present.shape) != (b, k1):
            raise ValueError(f"{who}: present must be {(b, k1)}, got {tuple(present.shape)}")
        bad = (seeds > k1 - 1) & (seeds != IGNORE) | (seeds < 0)
        if bool(bad.any()):
            raise ValueError(
                f"{who}: seeds hold values outside 0..{k1 - 1} and {IGNORE} (unlabelled)"
            )
        if self.needs_features:
            if features is None:
                raise ValueError(f"{who} needs node features, got None")
            if features.dim() != 4 or features.shape[0] != b or tuple(features.shape[2:]) != (h, w):
                raise ValueError(
                    f"{who}: features must be (B, C, h, w) = ({b}, C, {h}, {w}), "
                    f"got {tuple(features.shape)}; resize them to the score-map size first"
                )


def to_label_map(supervision: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """One label per position: a (B, h, w) map passes through; a (B, K+1, h, w) multi-hot
    map gives the claimed class with the highest probability, 255 where none is claimed."""
    if supervision.dim() == 3:
        return supervision.long()
    claimed = supervision.bool()
    best = probs.to(claimed.device).float().masked_fill(~claimed, -1.0).argmax(1)
    return torch.where(claimed.any(1), best, torch.full_like(best, IGNORE))


def to_image_size(supervision: torch.Tensor, seeds_small: torch.Tensor, seeds: torch.Tensor,
                  probs: torch.Tensor) -> torch.Tensor:
    """One label per pixel at the seeds' own (image) size from an expander's score-map output.

    The seeds keep their own resolution; only what the expander changed goes through the
    score map. A seed pixel loses or gains a class only where the expander took it from,
    or gave it to, the seeded position it saw (nearest, the way the seeds were shrunk);
    classes it added to unseeded positions are upsampled bilinearly onto the unseeded
    pixels (kept where at least half covered). A pixel left with more than one class takes
    the one with the highest bilinearly upsampled probability, as ``infer`` upsamples them.
    A nearest-neighbour enlargement of the score-map labels would instead blur the seeds
    into stride-sized blocks, and score an expander's labels below the seeds it grew from
    for resolution alone.

    ``supervision``: (B, h, w) label map or (B, K+1, h, w) multi-hot; ``seeds_small``: the
    seeds the expander saw, (B, h, w); ``seeds``: (B, H, W); ``probs``: (B, K+1, h, w).
    """
    k1, size = probs.shape[1], tuple(seeds.shape[-2:])
    claims, seeded = supervision_mask(supervision, k1), supervision_mask(seeds_small, k1)
    added, removed = claims & ~seeded, seeded & ~claims

    def nearest(mask: torch.Tensor) -> torch.Tensor:
        return F.interpolate(mask.float(), size=size, mode="nearest") > 0.5

    def smooth(mask: torch.Tensor) -> torch.Tensor:
        return resize_scores(mask.float(), size) >= 0.5

    seed_px = (seeds != IGNORE)[:, None]
    on_seeds = nearest(added & (seeds_small != IGNORE)[:, None])
    full = (supervision_mask(seeds, k1) & ~nearest(removed)) | torch.where(seed_px, on_seeds, smooth(added))
    probs_up = resize_scores(probs.float(), size)
    return to_label_map(full, probs_up)


def random_inputs(b: int, h: int, w: int, k: int, c: int, *, seed: int = 0, sharp: float = 4.0,
                  seed_frac: float = 0.15) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Synthetic expander inputs, the ones the tests check and the benchmarks time: (features
    (b, c, h, w), probabilities over background + ``k`` classes skewed by ``sharp`` so something
    grows, seeds (a ``seed_frac`` share of positions, each a present class), present (b, k+1))."""
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(b, c, h, w, generator=g)
    present = torch.zeros(b, k + 1, dtype=torch.bool)
    present[:, 0] = True
    for i in range(b):
        n = int(torch.randint(1, 4, (), generator=g))
        present[i, 1 + torch.randperm(k, generator=g)[:n]] = True
    logits = torch.randn(b, k + 1, h, w, generator=g) * sharp
    logits[~present] -= 100.0  # absent classes get ~0 probability, as from a trained net
    probs = torch.softmax(logits, 1)
    seeds = torch.full((b, h, w), IGNORE, dtype=torch.long)
    for i in range(b):
        cls = torch.nonzero(present[i]).flatten()
        pick = torch.rand(h, w, generator=g) < seed_frac
        seeds[i][pick] = cls[torch.randint(len(cls), (int(pick.sum()),), generator=g)]
    return feats, probs, seeds, present
