"""Evaluation: 15-subset sliding-window inference, the paper's metrics, result tables and prediction."""
