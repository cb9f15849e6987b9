"""Every optimiser against an independent reference over 100 steps of a float64 MLP.

Those torch has (SGD, Adam, AdamW, RMSprop, Adagrad, Adafactor) are compared with torch.optim
(``foreach=False``) on the same model, data and two parameter groups (weights: one lr and weight
decay; biases: half the lr, no decay; a frozen parameter with grad None in each). Lion has no
torch class: it is compared with a plain-numpy transcription of the paper's Algorithm 2, fed the
gradients torch computes at the numpy parameters, so only the update rule is shared.
"""

import copy

import numpy as np
import pytest
import torch

from layer5_training.optim.adafactor import Adafactor
from layer5_training.optim.adagrad import Adagrad
from layer5_training.optim.adam import Adam, AdamW
from layer5_training.optim.lion import Lion
from layer5_training.optim.registry import OPTIMIZERS, make_optimizer
from layer5_training.optim.rmsprop import RMSprop
from layer5_training.optim.sgd import SGD

STEPS = 100
TOL = 1e-7


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 5, generator=g, dtype=torch.float64)  # (N, D)
    y = torch.randn(32, 3, generator=g, dtype=torch.float64)  # (N, K)
    return x, y


def _params():
    g = torch.Generator().manual_seed(1)
    shapes = {
        "w1": (8, 5),
        "b1": (8,),
        "w2": (3, 8),
        "b2": (3,),
        "frozen_w": (2, 2),
        "frozen_b": (2,),
    }
    return {
        k: (0.5 * torch.randn(s, generator=g, dtype=torch.float64)).requires_grad_()
        for k, s in shapes.items()
    }


def _loss(p, x, y):
    h = torch.tanh(x @ p["w1"].T + p["b1"])  # (N, 8)
    return ((h @ p["w2"].T + p["b2"] - y) ** 2).mean()


def _groups(p, lr, wd):
    return [
        {"params": [p["w1"], p["w2"], p["frozen_w"]], "lr": lr, "weight_decay": wd},
        {"params": [p["b1"], p["b2"], p["frozen_b"]], "lr": lr / 2, "weight_decay": 0.0},
    ]


def _run(make, lr, wd, steps=STEPS, resume_at=None):
    """Train ``steps`` steps; at ``resume_at`` rebuild params + optimizer from a state_dict."""
    x, y = _data()
    p = _params()
    opt = make(_groups(p, lr, wd))
    for t in range(steps):
        if t == resume_at:
            saved_params = {k: v.detach().clone().requires_grad_() for k, v in p.items()}
            saved_state = copy.deepcopy(opt.state_dict())
            p = saved_params
            opt = make(
                _groups(p, 123.0, 0.5)
            )  # wrong hyper-parameters: the state_dict restores them
            opt.load_state_dict(saved_state)
        opt.zero_grad(set_to_none=True)
        _loss(p, x, y).backward()
        opt.step()
    return p, opt


TORCH_CASES = {
    "sgd": (SGD, torch.optim.SGD, 0.05, 0.01, {}),
    "sgd_momentum_dampening": (
        SGD,
        torch.optim.SGD,
        0.05,
        0.01,
        {"momentum": 0.9, "dampening": 0.3},
    ),
    "sgd_nesterov": (SGD, torch.optim.SGD, 0.05, 0.01, {"momentum": 0.9, "nesterov": True}),
    "adam_wd": (Adam, torch.optim.Adam, 0.01, 0.05, {"betas": (0.8, 0.99)}),
    "adam_amsgrad": (Adam, torch.optim.Adam, 0.01, 0.05, {"amsgrad": True}),
    "adamw": (AdamW, torch.optim.AdamW, 0.01, 0.1, {"eps": 1e-6}),
    "rmsprop": (RMSprop, torch.optim.RMSprop, 0.003, 0.01, {}),
    "rmsprop_centered_momentum": (
        RMSprop,
        torch.optim.RMSprop,
        0.003,
        0.01,
        {"centered": True, "momentum": 0.8, "alpha": 0.9},
    ),
    "adagrad": (
        Adagrad,
        torch.optim.Adagrad,
        0.1,
        0.01,
        {"lr_decay": 0.01, "initial_accumulator_value": 0.1},
    ),
    "adafactor": (Adafactor, torch.optim.Adafactor, 0.01, 0.0, {}),
    "adafactor_wd_clip": (
        Adafactor,
        torch.optim.Adafactor,
        0.05,
        0.1,
        {"d": 1.5, "beta2_decay": -0.5},
    ),
}


def _max_diff(p, q):
    return max((p[k] - q[k]).abs().max().item() for k in p)


@pytest.mark.parametrize("case", sorted(TORCH_CASES))
def test_trajectory_equals_torch_optim(case):
    ours, theirs, lr, wd, hyper = TORCH_CASES[case]
    p_ours, opt = _run(lambda g: ours(g, **hyper), lr, wd)
    p_torch, _ = _run(lambda g: theirs(g, foreach=False, **hyper), lr, wd)
    start = _params()
    assert _max_diff(p_ours, start) > 1e-2  # it trained
    assert _max_diff(p_ours, p_torch) <= TOL
    for k in ("frozen_w", "frozen_b"):  # grad None: skipped, no state
        assert torch.equal(p_ours[k], start[k]) and not opt.state[p_ours[k]]


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_state_dict_resume_is_exact(name):
    hyper = {"sgd": {"momentum": 0.9}, "rmsprop": {"centered": True, "momentum": 0.5}}.get(name, {})
    make = lambda g: make_optimizer(name, g, lr=0.01, **hyper)  # noqa: E731
    p_straight, _ = _run(make, 0.01, 0.01, steps=20)
    p_resumed, opt = _run(make, 0.01, 0.01, steps=20, resume_at=10)
    assert all(torch.equal(p_straight[k], p_resumed[k]) for k in p_straight)
    assert opt.param_groups[0]["lr"] == 0.01 and opt.param_groups[1]["lr"] == 0.005


def _lion_numpy(params, grad_fn, steps, lr, beta1, beta2, wd):
    """Chen et al. 2023, Algorithm 2, in numpy; ``lr``/``wd`` are per-parameter dicts."""
    m = {k: np.zeros_like(v) for k, v in params.items()}
    for _ in range(steps):
        grads = grad_fn(params)
        for k, g in grads.items():
            c = beta1 * m[k] + (1 - beta1) * g
            params[k] = params[k] - lr[k] * (np.sign(c) + wd[k] * params[k])
            m[k] = beta2 * m[k] + (1 - beta2) * g
    return params


def test_lion_equals_numpy_transcription_of_the_paper():
    lr, wd = 0.003, 0.1
    x, y = _data()
    live = {k: v for k, v in _params().items() if not k.startswith("frozen")}

    def grad_fn(np_params):
        tp = {k: torch.tensor(v, requires_grad=True) for k, v in np_params.items()}
        _loss(tp, x, y).backward()
        return {k: v.grad.numpy() for k, v in tp.items()}

    rates = {k: lr if k.startswith("w") else lr / 2 for k in live}
    decays = {k: wd if k.startswith("w") else 0.0 for k in live}
    start = {k: v.detach().numpy().copy() for k, v in live.items()}
    ref = _lion_numpy(start, grad_fn, STEPS, rates, 0.9, 0.99, decays)
    p_ours, _ = _run(lambda g: Lion(g, betas=(0.9, 0.99)), lr, wd)
    for k, v in ref.items():
        assert np.abs(p_ours[k].detach().numpy() - v).max() <= TOL, k
    assert np.abs(ref["w1"] - _params()["w1"].detach().numpy()).max() > 1e-2


def test_adafactor_factors_a_3d_parameter_like_torch():
    g = torch.Generator().manual_seed(3)
    w0 = torch.randn(2, 4, 6, generator=g, dtype=torch.float64)
    target = torch.randn(2, 4, 6, generator=g, dtype=torch.float64)
    out = []
    for cls, kw in ((Adafactor, {}), (torch.optim.Adafactor, {"foreach": False})):
        w = w0.clone().requires_grad_()
        opt = cls([w], lr=0.05, **kw)
        for _ in range(30):
            opt.zero_grad()
            ((w - target) ** 3).abs().sum().backward()
            opt.step()
        out.append(w.detach())
        if cls is Adafactor:
            assert opt.state[w]["row_var"].shape == (2, 4, 1) and opt.state[w]["col_var"].shape == (
                2,
                1,
                6,
            )
    assert (out[0] - out[1]).abs().max().item() <= TOL


def test_make_optimizer_builds_each_class_and_passes_hyper():
    w = torch.zeros(3, requires_grad=True)
    for name, cls in OPTIMIZERS.items():
        assert type(make_optimizer(name, [w], lr=0.1)) is cls
    opt = make_optimizer("sgd", [w], lr=0.1, momentum=0.7, nesterov=True)
    assert opt.param_groups[0]["momentum"] == 0.7 and opt.param_groups[0]["nesterov"]


BAD = [
    (lambda w: make_optimizer("adamx", [w], lr=0.1), "unknown optimizer 'adamx'.*adafactor"),
    (lambda w: SGD([w], lr=-0.1), "lr must be >= 0, got -0.1"),
    (lambda w: SGD([w], lr=0.1, momentum=-0.5), "momentum must be >= 0, got -0.5"),
    (lambda w: SGD([w], lr=0.1, nesterov=True), "nesterov needs momentum > 0.*momentum=0.0"),
    (lambda w: SGD([w], lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "dampening=0.1"),
    (lambda w: Adam([w], betas=(1.0, 0.999)), r"betas\[0\] must be in \[0, 1\), got 1.0"),
    (lambda w: AdamW([w], betas=(0.9, -0.1)), r"betas\[1\] must be in \[0, 1\), got -0.1"),
    (lambda w: Adam([w], eps=0.0), "eps must be > 0, got 0.0"),
    (lambda w: AdamW([w], weight_decay=-1.0), "weight_decay must be >= 0, got -1.0"),
    (lambda w: RMSprop([w], alpha=1.5), r"alpha must be in \[0, 1\), got 1.5"),
    (lambda w: RMSprop([w], eps=-1e-8), "eps must be > 0"),
    (lambda w: RMSprop([w], momentum=-0.1), "momentum must be >= 0, got -0.1"),
    (lambda w: Adagrad([w], lr_decay=-0.1), "lr_decay must be >= 0, got -0.1"),
    (lambda w: Adagrad([w], lr=-1.0), "lr must be >= 0, got -1.0"),
    (lambda w: Lion([w], betas=(0.9, 1.2)), r"betas\[1\] must be in \[0, 1\), got 1.2"),
    (lambda w: Lion([w], lr=-1e-4), "lr must be >= 0"),
    (lambda w: Adafactor([w], beta2_decay=0.5), "beta2_decay must be <= 0, got 0.5"),
    (lambda w: Adafactor([w], d=0.5), "d .* must be >= 1, got 0.5"),
    (lambda w: Adafactor([w], eps=(None, -1.0)), r"eps\[1\] .* must be >= 0, got -1.0"),
]


@pytest.mark.parametrize("i", range(len(BAD)))
def test_bad_hyper_parameters_raise_naming_the_value(i):
    build, message = BAD[i]
    with pytest.raises(ValueError, match=message):
        build(torch.zeros(2, requires_grad=True))
