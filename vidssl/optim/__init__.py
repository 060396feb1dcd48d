"""Optimisation pieces below the methods and the trainer: the optimizer built from a method's named parameter
groups, per-step lr / weight-decay values, schedules and LARS."""
from vidssl.optim.lars import LARS, exclude_bias_and_norm
from vidssl.optim.optimizer import apply_step_values, build_optimizer, step_values
from vidssl.optim.schedules import cosine_ramp, lr_factor

__all__ = ["LARS", "exclude_bias_and_norm", "build_optimizer", "step_values", "apply_step_values", "cosine_ramp",
           "lr_factor"]
