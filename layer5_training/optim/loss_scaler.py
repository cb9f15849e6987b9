"""Dynamic loss scaling for float16 training (Micikevicius et al. 2018, "Mixed Precision Training").

float16 has 5 exponent bits: its smallest normal number is 6.1·10⁻⁵ (subnormals reach 6·10⁻⁸)
and its largest 65504. Gradients of a deep net are often smaller than that floor and would
flush to zero. Multiplying the loss by a scale S multiplies every gradient by S (the chain rule
is linear), lifting them into range; the optimiser must see the true gradient, so it is divided
by S again, in float32, before clipping and the step::

    backward of S · L  →  S g            unscale:  g = (S g) / S
    if any element of S g is inf or nan:  skip the step,  S ← S · backoff,  streak ← 0
    else:                                 step,            streak ← streak + 1
                                          if streak = growth_interval:  S ← S · growth, streak ← 0

So S probes upwards (×2 every 2000 clean steps by default) and halves at each overflow: it
settles just below the largest scale the gradients tolerate. An overflowed step is lost, not
harmful. The rule, the defaults and the order of operations are torch.amp.GradScaler's; the
scale is held as a float32 number as torch does, so a growth that would overflow float32 is
refused. bfloat16 has float32's exponent range and needs no scaling: construct the scaler with
``enabled=False`` and every call is a pass-through (the training loop need not branch).

Usage per step: ``scaler.scale(loss).backward()``; optionally ``scaler.unscale_(opt)`` then clip;
``scaler.step(opt)``; ``scaler.update()``.
"""

from __future__ import annotations

from typing import Any

import torch


def _unscale_and_check(optimizer: torch.optim.Optimizer, inv_scale: torch.Tensor) -> bool:
    """Multiply every gradient by ``inv_scale`` in place; True if any was inf or nan."""
    found_inf = False
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.grad is None:
                continue
            if not bool(torch.isfinite(p.grad).all()):
                found_inf = True
            p.grad.mul_(inv_scale.to(p.grad.device, p.grad.dtype))
    return found_inf


class DynamicLossScaler:
    """Scale the loss, unscale the gradients, skip overflowed steps, and adapt the scale."""

    def __init__(
        self,
        init_scale: float = 2.0**16,
        growth_factor: float = 2.0,
        backoff_factor: float = 0.5,
        growth_interval: int = 2000,
        enabled: bool = True,
    ) -> None:
        if not init_scale > 0:
            raise ValueError(f"init_scale must be > 0, got {init_scale}")
        if not growth_factor > 1:
            raise ValueError(f"growth_factor must be > 1, got {growth_factor}")
        if not 0 < backoff_factor < 1:
            raise ValueError(f"backoff_factor must be in (0, 1), got {backoff_factor}")
        if not (isinstance(growth_interval, int) and growth_interval >= 1):
            raise ValueError(f"growth_interval must be an int >= 1, got {growth_interval}")
        self.enabled = enabled
        self.growth_factor = growth_factor
        self.backoff_factor = backoff_factor
        self.growth_interval = growth_interval
        self._scale = torch.tensor(init_scale, dtype=torch.float32)
        self._growth_tracker = 0  # clean steps since the last change of scale
        self._found_inf: dict[int, bool] = {}  # per optimizer unscaled this step: overflow seen

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        """``S · loss`` (``loss`` itself when disabled)."""
        if not self.enabled:
            return loss
        return loss * self._scale.to(loss.device, loss.dtype)

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        """Divide ``optimizer``'s gradients by S in place (once per step), noting any overflow."""
        if not self.enabled:
            return
        if id(optimizer) in self._found_inf:
            raise RuntimeError("unscale_() was already called on this optimizer since update()")
        inv_scale = self._scale.double().reciprocal().float()
        self._found_inf[id(optimizer)] = _unscale_and_check(optimizer, inv_scale)

    def step(self, optimizer: torch.optim.Optimizer) -> bool:
        """Unscale if not yet done, then ``optimizer.step()`` unless a gradient overflowed.

        Returns whether the step was taken.
        """
        if not self.enabled:
            optimizer.step()
            return True
        if id(optimizer) not in self._found_inf:
            self.unscale_(optimizer)
        if self._found_inf[id(optimizer)]:
            return False
        optimizer.step()
        return True

    def update(self) -> None:
        """Back off after an overflow, grow after ``growth_interval`` clean steps."""
        if not self.enabled:
            return
        if not self._found_inf:
            raise RuntimeError("update() before any unscale_() or step() of this iteration")
        if any(self._found_inf.values()):
            self._scale = self._scale * self.backoff_factor
            self._growth_tracker = 0
        else:
            self._growth_tracker += 1
            if self._growth_tracker == self.growth_interval:
                grown = self._scale * self.growth_factor
                if torch.isfinite(grown):  # a float32 overflow of S itself is refused
                    self._scale = grown
                self._growth_tracker = 0
        self._found_inf = {}

    def get_scale(self) -> float:
        """The current scale S (1.0 when disabled)."""
        return float(self._scale) if self.enabled else 1.0

    def state_dict(self) -> dict[str, Any]:
        """The scale and its schedule, under torch.amp.GradScaler's keys."""
        return {
            "scale": self.get_scale(),
            "growth_factor": self.growth_factor,
            "backoff_factor": self.backoff_factor,
            "growth_interval": self.growth_interval,
            "_growth_tracker": self._growth_tracker,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._scale = torch.tensor(state["scale"], dtype=torch.float32)
        self.growth_factor = state["growth_factor"]
        self.backoff_factor = state["backoff_factor"]
        self.growth_interval = state["growth_interval"]
        self._growth_tracker = state["_growth_tracker"]
