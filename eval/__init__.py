"""Evaluation on top of the engines: logit metrics, sampling and teacher-forced runs, per-group
sensitivity to ternarization, and ternary quantization-aware training."""
