"""What passes may ask of the PyTorch model a module was imported from.

Passes never import this layer: harden-opt hands a `ModelMeasurements` to them through
`PassContext.measurements`. It rebuilds the reference model from the module's provenance
once, samples sequences from it once per (count, length, seed), and serves:

* `calibration(...)`: the Hessians of every linear's input (eval/calibration.py), on
  sampled sequences or on a text's tokens (`text=`, a file);
* `sensitivity(...)`: the f32 logits on sampled sequences and the metrics of the model
  with some weights replaced (eval/sensitivity.py), for harden-ternary-policy;
* `recall(kind, key)` / `remember(kind, key, value)`: results a pass measured before, as
  JSON under the compile cache's directory (`$HARDEN_CACHE_DIR/<kind>/<key>.json`), so that
  asking the policy for another budget of the same module reuses its measurements. The key
  is the pass's own digest of everything the result depends on; an entry that does not
  parse is measured again.

Problems (no provenance, a moved checkpoint, a calibration text that cannot be read) are
`MeasurementError`s, which the passes report at the module.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch_mlir import ir

from harden.backend.cache import default_cache_dir
from harden.backend.engines import TorchEngine
from harden.core.files import write_atomically
from harden.core import progress
from harden.eval.calibration import Calibration, calibrate
from harden.eval.evaluate import BOS, sample_sequences, sample_tokens, split_bos, text_windows
from harden.eval.sensitivity import SensitivityModel
from harden.frontend.provenance import (PROVENANCE_ATTR, Provenance, load_provenance, reference_memory_shortfall, reference_model_from_provenance,
                                        tokenizer_from_provenance)
from harden.frontend.weights import FrontendError
from harden.passes.ternary_policy import MeasurementError
from harden.quant.options import TernaryOptions


class ModelMeasurements:
    """Measurements on the reference model of the modules passed in (see the module docstring)."""

    def __init__(self, cache_dir: Path | None = None):
        self.cache_dir = cache_dir if cache_dir is not None else default_cache_dir()
        self._models: dict[str, object] = {}
        self._sequences: dict[tuple, list[list[int]]] = {}
        self._calibrations: dict[tuple, Calibration] = {}

    def _provenance(self, module: ir.Operation) -> Provenance:
        if PROVENANCE_ATTR not in module.attributes:
            raise MeasurementError(f"needs the module's provenance ({PROVENANCE_ATTR}, written by harden-import)")
        try:
            return load_provenance(module)
        except FrontendError as e:
            raise MeasurementError(str(e)) from None

    def _model(self, provenance: Provenance):
        key = repr(provenance)
        if key not in self._models:
            _check_fits_memory(provenance)
            try:
                self._models[key] = reference_model_from_provenance(provenance)
            except FrontendError as e:
                raise MeasurementError(str(e)) from None
        return self._models[key]

    def _sampled(self, provenance: Provenance, samples: int, seq_len: int, seed: int, batched: bool) -> list[list[int]]:
        """Sequences sampled from the model: batched (all at once through the KV cache: fast,
        for calibration) or as harden-run samples them (one at a time: the same sequences
        for the same seed, so harden-run measures the KL a policy measured)."""
        length = min(seq_len or provenance.seq_len, provenance.max_seq_len)
        key = (repr(provenance), samples, length, seed, batched)
        if key not in self._sequences:
            model = self._model(provenance)
            with progress.stage(f"sampling {samples} sequences of {length} tokens from the f32 model"):
                if batched:
                    sequences = sample_tokens(model, samples, length, torch.Generator().manual_seed(seed)).tolist()
                else:
                    sequences = sample_sequences(TorchEngine(model, provenance.seq_len, provenance.max_seq_len), samples, length, seed, BOS)
            self._sequences[key] = sequences
        return self._sequences[key]

    def calibration(self, module: ir.Operation, samples: int, seq_len: int, seed: int, text: str = "") -> Calibration:
        """Hessians of every linear's input on `samples` sequences of `seq_len` tokens sampled
        from the model (seed), or on the file `text` cut into windows of `seq_len`."""
        provenance = self._provenance(module)
        key = (repr(provenance), samples, seq_len, seed, text)
        if key not in self._calibrations:
            if text:
                sequences = self._text_windows(provenance, text, seq_len or provenance.seq_len)
            else:
                sequences = self._sampled(provenance, samples, seq_len, seed, batched=True)
            self._calibrations[key] = calibrate(self._model(provenance), sequences)
        return self._calibrations[key]

    def _text_windows(self, provenance: Provenance, text: str, length: int) -> list[list[int]]:
        try:
            tokenizer = tokenizer_from_provenance(provenance)
            content = Path(text).read_text(encoding="utf-8")
        except FrontendError as e:
            raise MeasurementError(f"a calibration text needs the model's tokenizer: {e}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise MeasurementError(f"cannot read the calibration text '{text}' ({e.__class__.__name__})") from None
        bos, body = split_bos(tokenizer, tokenizer.encode(content))
        if len(body) < 2:
            raise MeasurementError(f"the calibration text '{text}' holds no text")
        length = min(length, provenance.max_seq_len)
        return text_windows(body, length, bos)

    def sensitivity(self, module: ir.Operation, options: TernaryOptions, samples: int, seq_len: int, seed: int) -> SensitivityModel:
        """The f32 model's logits on sampled sequences, ready to measure replaced weights."""
        provenance = self._provenance(module)
        sequences = self._sampled(provenance, samples, seq_len, seed, batched=False)
        return SensitivityModel(self._model(provenance), sequences, provenance.seq_len, provenance.max_seq_len, options)

    def recall(self, kind: str, key: str):
        """What `remember(kind, key, ...)` stored, or None."""
        try:
            return json.loads((self.cache_dir / kind / f"{key}.json").read_text())
        except (OSError, ValueError):
            return None

    def remember(self, kind: str, key: str, value) -> None:
        try:
            (self.cache_dir / kind).mkdir(parents=True, exist_ok=True)
            write_atomically(self.cache_dir / kind / f"{key}.json", json.dumps(value, sort_keys=True))
        except OSError:
            pass  # a cache that cannot be written only costs time


def _check_fits_memory(provenance: Provenance) -> None:
    shortfall = reference_memory_shortfall(provenance)
    if shortfall:
        raise MeasurementError(f"{shortfall}; policy=none quantizes without measuring it")
