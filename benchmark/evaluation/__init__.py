"""Evaluation of trained models: pooled change-detection metrics (`metrics`)."""
