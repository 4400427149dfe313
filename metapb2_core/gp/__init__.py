"""Gaussian processes for the PB2 family: the time-varying kernel on GPy and a fast predictor."""
