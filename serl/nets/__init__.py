"""Networks: MLPs, the stacked critic ensemble, the tanh-Gaussian policy, image encoders."""
