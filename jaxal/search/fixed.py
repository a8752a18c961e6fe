"""The trivial search: the configured architecture, every round."""


def fixed(context) -> tuple[str, dict, dict]:
  """Returns `(config.model.name, config.model.options, {})` unchanged."""
  model_cfg = context.config.model
  return model_cfg.name, dict(model_cfg.options), {}
