"""The generative capability's registrations (no torch): the model kinds vae, diffusion and
autoencoder. danlu._plugins imports this module before a recipe is validated."""
from . import _autoencoder_kind, _diffusion_kind, _vae_kind  # noqa: F401  (each registers its kind)
