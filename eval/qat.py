"""Ternary quantization-aware training (QAT) with distillation from the f32 model.

The student is a copy of the f32 reference model whose linears (the ones harden-ternarize
rewrites: q, k, v, o, gate, up, down; not the embedding or classifier) see ternary weights
in the forward pass: latent f32 weights, ternarized with the compiler's rules in every
step, and a straight-through estimator (the gradient passes to the latent weight as if
ternarization were the identity). Embedding and norms stay f32 and train too. The loss is
KL(teacher || student) over every position of sequences sampled from the teacher at
temperature 1 (no data set needed), from a pool that is refreshed as it is used up.

At the end each latent weight is replaced by its ternarization from
`harden.quant.ternary.ternarize_as` (the function harden-ternarize calls), so every
scale group is exactly {-s, 0, +s} and the compiler converts the checkpoint losslessly.

Recipe (measured on stories260K, see the README): absmean per output channel, AdamW
(betas 0.9/0.95, no weight decay), learning rate 2e-3 for latent weights and 1e-3 for the
f32 ones, 3% warm-up then cosine decay, batches of 16 x 128 tokens, gradient clipping 1.

Recovery after calibrated rounding (`method=ls` or `gptq`, the path that scales to real
models): every linear starts from the compiler's own quantization of it (GPTQ on Hessians
calibrated from teacher samples, or least-squares rounding) and only what is cheap to
train moves: the per-group scales (`train="scales"`: codes fixed, as EfficientQAT's
end-to-end stage) or the scales and the codes through a latent code started exactly on
them (`train="all"`: codes = clamp(round(latent)) with a straight-through round, the
latent in units of its scale so that one learning rate fits every layer), plus the norms.
The embedding table (and a tied classifier) stays f32 and frozen: its gradient is a
quarter of SmolLM2's parameters and the compiler keeps it f32. The weights written are
codes x scale exactly, so the pipeline converts them without loss.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.utils import parametrize

from harden.core import progress
from harden.eval.calibration import calibrate
from harden.eval.evaluate import sample_tokens
from harden.eval.sensitivity import CLASSIFIERS
from harden.frontend.llama import Llama
from harden.quant.options import TernaryOptions
from harden.quant.precision import Precision, quantize_as
from harden.quant.ternary import ternarize_as

HELDOUT_SEED = 8_675_309
"""Seed of the held-out sequences; training samples come from the seed the user gives."""


@dataclass(frozen=True)
class QatOptions:
    ternary: TernaryOptions = TernaryOptions()  # the numerics harden-ternarize will harden with
    batch: int = 16  # sequences per step
    seq_len: int = 128  # tokens per sequence (BOS + 127 sampled)
    lr: float = 2e-3  # latent ternary weights
    lr_f32: float = 1e-3  # embedding and norms
    warmup: float = 0.03  # fraction of the run
    pool: int = 1024  # teacher sequences per refresh
    first_pool: int = 128  # a small first pool, so training starts at once
    reuse: int = 4  # uses of each pool sequence before the pool is refreshed
    grad_clip: float = 1.0
    eval_seconds: float = 60.0  # held-out evaluation at least this often
    heldout: int = 8  # held-out sequences (of seq_len tokens)
    train: str = "latent"  # latent (absmean/twn: latent weights, scales recomputed); scales or all (ls/gptq)
    lr_scales: float = 1e-4  # per-group scales (ls/gptq)
    lr_codes: float = 1e-2  # latent codes of train=all (ls/gptq): a flip takes 50 steps one way
    calibration_samples: int = 16  # gptq: teacher sequences the Hessians come from

    @property
    def calibrated(self) -> bool:
        """Whether the student starts from the compiler's calibrated rounding (ls or gptq)."""
        return self.ternary.method in ("ls", "gptq")


def ternary_weight(w: torch.Tensor, options: QatOptions) -> torch.Tensor:
    """The dequantized ternary weight harden-ternarize gives `w` (numpy, the compiler's code)."""
    return torch.from_numpy(ternarize_as(w.detach().cpu().numpy(), options.ternary).dequantize())


class _RoundStraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad):
        return grad


class QuantizedLinear(torch.nn.Module):
    """A linear whose weight is sum over planes of codes x scales (per group of columns),
    with trainable scales and, with a latent weight, trainable codes (one plane)."""

    def __init__(self, codes: np.ndarray, scales: np.ndarray, group_size: int, bias: torch.Tensor | None, train_codes: bool):
        super().__init__()
        self.group_size, self.in_features = group_size, codes.shape[-1]
        self.scales = torch.nn.Parameter(torch.from_numpy(np.array(scales, np.float32)))  # [planes, out, groups]
        codes = torch.from_numpy(np.array(codes, np.float32))  # [planes, out, in]
        if train_codes:  # in units of the scale: a code flips when its latent crosses +-0.5
            self.latent = torch.nn.Parameter(codes[0].clone())
        else:
            self.register_buffer("codes", codes)
        self.bias = bias

    def _full(self) -> torch.Tensor:
        return self.scales.repeat_interleave(self.group_size, dim=-1)[..., : self.in_features]

    @property
    def weight(self) -> torch.Tensor:
        full = self._full()
        if hasattr(self, "latent"):
            return torch.clamp(_RoundStraightThrough.apply(self.latent), -1, 1) * full[0]
        return (self.codes * full).sum(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


def _calibrated_student(teacher: Llama, options: QatOptions, generator: torch.Generator):
    """The student of ls/gptq recovery (see the module docstring): its parameter groups
    and a function that turns it into a plain Llama with the trained weights."""
    if options.ternary.planes != 1:
        raise ValueError("recovery after calibrated rounding trains one ternary plane")
    hessians = None
    if options.ternary.method == "gptq":
        sequences = sample_tokens(teacher, options.calibration_samples, options.seq_len, generator).tolist()
        hessians = calibrate(teacher, sequences)
    student = copy.deepcopy(teacher)
    for p in student.parameters():
        p.requires_grad_(False)
    precision = Precision("ternary")
    linears = ternarized_linears(student)
    for name, linear in progress.bar(list(linears.items()), desc="calibrated rounding", unit="linear"):
        hessian = hessians.hessian(name + ".weight") if hessians is not None else None
        q = quantize_as(linear.weight.detach().numpy(), precision, options.ternary, hessian)
        parent_name, _, child = name.rpartition(".")
        setattr(student.get_submodule(parent_name), child, QuantizedLinear(q.ternary, q.scales, q.group_size, linear.bias, options.train == "all"))
    quantized = [m for m in student.modules() if isinstance(m, QuantizedLinear)]
    scales = [m.scales for m in quantized]
    latent = [m.latent for m in quantized if hasattr(m, "latent")]
    norms = [p for name, p in student.named_parameters() if name.endswith("norm.weight")]
    for p in norms:
        p.requires_grad_(True)
    groups = [(scales, options.lr_scales), (latent, options.lr_codes), (norms, options.lr_f32)]

    def finish() -> Llama:
        with torch.no_grad():
            for name in linears:
                parent_name, _, child = name.rpartition(".")
                module = student.get_submodule(parent_name)
                trained = getattr(module, child)
                plain = torch.nn.Linear(trained.in_features, trained.scales.shape[1], bias=trained.bias is not None)
                plain.weight.copy_(trained.weight)
                if trained.bias is not None:
                    plain.bias.copy_(trained.bias)
                setattr(module, child, plain)
        return student

    return student, [(params, lr) for params, lr in groups if params], finish


def _latent_student(teacher: Llama, options: QatOptions):
    """The student of plain QAT: latent weights ternarized with the compiler's rules each step."""
    student = copy.deepcopy(teacher)
    for p in student.parameters():
        p.requires_grad_(True)
    latent = []
    for module in ternarized_linears(student).values():
        parametrize.register_parametrization(module, "weight", _StraightThroughTernary(options))
        latent.append(module.parametrizations.weight.original)
    latent_ids = {id(p) for p in latent}
    others = [p for p in student.parameters() if id(p) not in latent_ids]

    def finish() -> Llama:
        for module in ternarized_linears(student).values():
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
            with torch.no_grad():
                module.weight.copy_(ternary_weight(module.weight, options))
        return student

    return student, [(latent, options.lr), (others, options.lr_f32)], finish


class _StraightThroughTernary(torch.nn.Module):
    """Parametrization: the forward sees ternary(latent); gradients reach the latent unchanged."""

    def __init__(self, options: QatOptions):
        super().__init__()
        self.options = options

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return latent + (ternary_weight(latent, self.options) - latent).detach()


def ternarized_linears(model: Llama) -> dict[str, torch.nn.Linear]:
    """The linears the pipeline ternarizes, by module name."""
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] not in CLASSIFIERS
    }


@torch.no_grad()
def agreement(teacher_logp: torch.Tensor, student: Llama, tokens: torch.Tensor) -> dict[str, float]:
    """Top-1 agreement and KL(teacher || student) in nats over every position."""
    student_logp = F.log_softmax(student(tokens).float(), dim=-1)
    return {
        "top1_agreement": float((student_logp.argmax(-1) == teacher_logp.argmax(-1)).float().mean()),
        "kl": float((teacher_logp.exp() * (teacher_logp - student_logp)).sum(-1).mean()),
    }


@dataclass
class QatResult:
    model: Llama  # the student with exactly ternary linears
    history: list[dict]  # evaluations: step, seconds, loss, top1_agreement, kl
    setup_seconds: float  # before the first step: calibrated rounding, held-out samples


class _TeacherPool:
    """Teacher-sampled sequences, each used `reuse` times, refreshed when used up."""

    def __init__(self, teacher: Llama, options: QatOptions, generator: torch.Generator):
        self.teacher, self.options, self.generator = teacher, options, generator
        self.tokens = torch.empty(0, options.seq_len, dtype=torch.int64)
        self.order: list[int] = []
        self.refills = 0

    def batch(self) -> torch.Tensor:
        if len(self.order) < self.options.batch:
            size = self.options.first_pool if self.refills == 0 else self.options.pool
            self.tokens = sample_tokens(self.teacher, max(size, self.options.batch), self.options.seq_len, self.generator)
            uses = [torch.randperm(len(self.tokens), generator=self.generator) for _ in range(self.options.reuse)]
            self.order = torch.cat(uses).tolist()
            self.refills += 1
        picked, self.order = self.order[: self.options.batch], self.order[self.options.batch :]
        return self.tokens[picked]


def train(
    teacher: Llama,
    options: QatOptions,
    *,
    steps: int | None = None,
    minutes: float | None = None,
    seed: int = 0,
    progress: Callable[[dict], None] | None = None,
) -> QatResult:
    """Trains a ternary student for `steps` steps or `minutes` of wall time (one of them).

    Deterministic for a seed with `steps` (the learning-rate schedule follows steps); with
    `minutes` it follows the clock, so runs differ in length.
    """
    if (steps is None) == (minutes is None):
        raise ValueError("give exactly one of steps and minutes")
    setup = time.perf_counter()
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    teacher = teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    if options.calibrated:
        student, groups, finish = _calibrated_student(teacher, options, generator)
    else:
        student, groups, finish = _latent_student(teacher, options)
    student.train()
    trained = [p for params, _ in groups for p in params]
    optimizer = torch.optim.AdamW([{"params": params, "lr": lr} for params, lr in groups], betas=(0.9, 0.95), weight_decay=0.0)
    peak = [lr for _, lr in groups]
    heldout = sample_tokens(teacher, options.heldout, options.seq_len, torch.Generator().manual_seed(HELDOUT_SEED))
    with torch.no_grad():
        heldout_logp = F.log_softmax(teacher(heldout).float(), dim=-1)
    pool = _TeacherPool(teacher, options, generator)

    start, last_eval, step, history, loss_value = time.perf_counter(), -math.inf, 0, [], float("nan")
    setup = start - setup

    def evaluate(final: bool = False) -> None:
        student.eval()
        entry = {"step": step, "seconds": time.perf_counter() - start, "loss": loss_value, **agreement(heldout_logp, student, heldout)}
        student.train()
        if final:
            entry["final"] = True
        history.append(entry)
        if progress:
            progress(entry)

    while True:
        elapsed = time.perf_counter() - start
        fraction = step / steps if steps is not None else elapsed / (60 * minutes)
        if fraction >= 1:
            break
        factor = fraction / options.warmup if fraction < options.warmup else 0.5 * (1 + math.cos(math.pi * (fraction - options.warmup) / (1 - options.warmup)))
        for group, lr in zip(optimizer.param_groups, peak):
            group["lr"] = lr * factor
        tokens = pool.batch()
        with torch.no_grad():
            teacher_logp = F.log_softmax(teacher(tokens).float(), dim=-1)
        student_logp = F.log_softmax(student(tokens).float(), dim=-1)
        loss = F.kl_div(student_logp, teacher_logp, log_target=True, reduction="none").sum(-1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, options.grad_clip)
        optimizer.step()
        step, loss_value = step + 1, loss.item()
        if time.perf_counter() - last_eval >= options.eval_seconds:
            last_eval = time.perf_counter()
            evaluate()

    student = finish().eval()
    evaluate(final=True)
    return QatResult(student, history, setup)


def exactly_ternary(model: Llama, options: QatOptions) -> bool:
    """Whether every ternarized linear is already its own ternarization (lossless export).
    A calibrated student is checked on its grid with the rule that keeps exact groups."""
    if options.calibrated:
        options = dataclasses.replace(options, ternary=dataclasses.replace(options.ternary, method="absmean"))
    return all(
        np.array_equal(module.weight.detach().numpy(), ternary_weight(module.weight, options).numpy())
        for module in ternarized_linears(model).values()
    )
