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
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.utils import parametrize

from harden.eval.evaluate import sample_tokens
from harden.eval.sensitivity import CLASSIFIERS
from harden.frontend.llama import Llama
from harden.quant.options import TernaryOptions
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


def ternary_weight(w: torch.Tensor, options: QatOptions) -> torch.Tensor:
    """The dequantized ternary weight harden-ternarize gives `w` (numpy, the compiler's code)."""
    return torch.from_numpy(ternarize_as(w.detach().cpu().numpy(), options.ternary).dequantize())


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
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    teacher = teacher.eval()
    student = copy.deepcopy(teacher).train()
    latent = []
    for module in ternarized_linears(student).values():
        parametrize.register_parametrization(module, "weight", _StraightThroughTernary(options))
        latent.append(module.parametrizations.weight.original)
    latent_ids = {id(p) for p in latent}
    others = [p for p in student.parameters() if id(p) not in latent_ids]
    optimizer = torch.optim.AdamW(
        [{"params": latent, "lr": options.lr}, {"params": others, "lr": options.lr_f32}],
        betas=(0.9, 0.95),
        weight_decay=0.0,
    )
    peak = [options.lr, options.lr_f32]
    heldout = sample_tokens(teacher, options.heldout, options.seq_len, torch.Generator().manual_seed(HELDOUT_SEED))
    with torch.no_grad():
        heldout_logp = F.log_softmax(teacher(heldout).float(), dim=-1)
    pool = _TeacherPool(teacher, options, generator)

    start, last_eval, step, history, loss_value = time.perf_counter(), -math.inf, 0, [], float("nan")

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
        torch.nn.utils.clip_grad_norm_(student.parameters(), options.grad_clip)
        optimizer.step()
        step, loss_value = step + 1, loss.item()
        if time.perf_counter() - last_eval >= options.eval_seconds:
            last_eval = time.perf_counter()
            evaluate()

    for name, module in ternarized_linears(student).items():
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
        with torch.no_grad():
            module.weight.copy_(ternary_weight(module.weight, options))
    student.eval()
    evaluate(final=True)
    return QatResult(student, history)


def exactly_ternary(model: Llama, options: QatOptions) -> bool:
    """Whether every ternarized linear is already its own ternarization (lossless export)."""
    return all(
        np.array_equal(module.weight.detach().numpy(), ternary_weight(module.weight, options).numpy())
        for module in ternarized_linears(model).values()
    )
