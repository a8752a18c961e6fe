"""Training: optimizer from config (`optim`), pure jitted steps (`step`), and `fit` (`trainer`)."""
