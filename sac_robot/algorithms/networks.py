# SPDX-License-Identifier: Apache-2.0
"""Networks: MLPs, an ensemble of Q-functions, the tanh-Gaussian policy, the SQL sampler.

The critics of both algorithms are one :class:`QEnsemble`: ``E`` Q-functions evaluated with
batched matrix products. ``E = 2`` gives SAC's twin critics; larger ensembles, layer norm and
dropout give the high update-to-data variants (REDQ: Chen et al. 2021; DroQ: Hiraoka et al.
2022).
"""

import math

import torch
from torch import nn
from torch.nn import functional as F

from sac_robot.algorithms.observations import image_key, normalize_spec

#: Bounds on the policy's log standard deviation. The SAC paper leaves them open; these are the
#: values of the authors' softlearning code (and of SB3 and CleanRL).
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


def mlp(in_features: int, hidden: tuple, out_features: int) -> nn.Sequential:
    """Return a ReLU MLP (SAC paper Table 1: ReLU hidden layers)."""
    layers, width = [], in_features
    for units in hidden:
        layers += [nn.Linear(width, units), nn.ReLU()]
        width = units
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


class EnsembleLinear(nn.Module):
    """``E`` independent linear layers applied to ``E`` inputs with one batched product."""

    def __init__(self, ensemble: int, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(ensemble, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(ensemble, 1, out_features))
        # Each member initialised as nn.Linear would be (Kaiming uniform, a = sqrt(5)).
        bound = 1.0 / math.sqrt(in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor, detach_params: bool = False) -> torch.Tensor:
        """Map ``[E, B, in]`` (or ``[B, in]``, shared by all members) to ``[E, B, out]``.

        ``detach_params`` uses the weights as constants: gradients reach ``x`` only.
        """
        weight, bias = self.weight, self.bias
        if detach_params:
            weight, bias = weight.detach(), bias.detach()
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(weight.shape[0], -1, -1)
        if weight.shape[-1] == 1:
            # A critic's output: a product with one column is a matrix-vector product, which
            # the batched GEMM does at a fraction of its speed; multiply and sum instead.
            return (x * weight.transpose(1, 2)).sum(-1, keepdim=True) + bias
        return torch.baddbmm(bias, x, weight)


class QEnsemble(nn.Module):
    """``E`` soft Q-functions ``Q_i(s, a)``, optionally with dropout and layer norm (DroQ)."""

    def __init__(self, obs_spec, action_dim: int, hidden: tuple = (256, 256),
                 ensemble: int = 2, dropout: float = 0.0, layer_norm: bool = False,
                 ignore: tuple = ()):
        super().__init__()
        self.ensemble = ensemble
        self.encoder = Encoder(obs_spec, ignore)
        layers, width = [], self.encoder.out_features + action_dim
        for units in hidden:
            layers.append(EnsembleLinear(ensemble, width, units))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            if layer_norm:
                layers.append(nn.LayerNorm(units))
            layers.append(nn.ReLU())
            width = units
        layers.append(EnsembleLinear(ensemble, width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, obs, action: torch.Tensor, detach_params: bool = False) -> torch.Tensor:
        """Return ``[E, B]`` float32 Q-values of the ``B`` pairs ``(obs, action)``.

        ``detach_params`` treats the critics' parameters as constants (the policy objective
        needs gradients with respect to the action only).
        """
        if detach_params:
            with torch.no_grad():  # the observation's features need no gradient at all
                features = self.encoder(obs)
        else:
            features = self.encoder(obs)
        return self.head(features, action, detach_params)

    def head(self, features: torch.Tensor, action: torch.Tensor,
             detach_params: bool = False) -> torch.Tensor:
        """:meth:`forward` from the encoder's ``features`` of the observations."""
        x = torch.cat([features, action.to(features.dtype)], dim=-1)
        for layer in self.net:
            x = layer(x, detach_params) if isinstance(layer, EnsembleLinear) else layer(x)
        return x.squeeze(-1).float()


def tanh_gaussian_log_prob(u: torch.Tensor, mean: torch.Tensor,
                           log_std: torch.Tensor) -> torch.Tensor:
    """Return ``log pi(tanh(u))`` for ``u ~ N(mean, exp(log_std))`` (SAC paper Eq. 26).

    ``log(1 - tanh(u)^2)`` is computed as ``2 (log 2 - u - softplus(-2u))``, which is exact and
    stays finite where ``tanh(u)`` rounds to +-1 (the naive form gives ``log 0``).
    """
    gaussian = (-0.5 * ((u - mean) / log_std.exp()) ** 2 - log_std
                - 0.5 * math.log(2 * math.pi)).sum(-1)
    squash = (2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(-1)
    return gaussian - squash


class TanhGaussianPolicy(nn.Module):
    """``a = tanh(mu(s) + sigma(s) * eps)``: SAC's reparameterized policy (Eq. 8, App. C)."""

    def __init__(self, obs_spec, action_dim: int, hidden: tuple = (256, 256),
                 ignore: tuple = ()):
        super().__init__()
        self.action_dim = action_dim
        self.encoder = Encoder(obs_spec, ignore)
        self.net = mlp(self.encoder.out_features, hidden, 2 * action_dim)

    def distribution(self, obs=None, features: torch.Tensor | None = None):
        """Return the mean and the clamped log standard deviation of ``u``.

        From ``obs``, or from ``features`` an encoder made of them (a shared encoder's).
        """
        if features is None:
            features = self.encoder(obs)
        mean, log_std = self.net(features).float().chunk(2, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def forward(self, obs, deterministic: bool = False,
                generator: torch.Generator | None = None, log_prob: bool = True,
                features: torch.Tensor | None = None):
        """Return ``(action, log_prob)``; deterministic gives ``tanh(mean)`` and no log-prob.

        ``obs`` is a ``[B, O]`` tensor or, for a dict observation spec, a dict of them (or
        None with ``features``: an encoder's of them). ``log_prob=False`` skips the
        log-probability (None), as acting needs none; the action and the generator's stream
        are the same either way.
        """
        mean, log_std = self.distribution(obs, features)
        if deterministic:
            return torch.tanh(mean), None
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        u = mean + log_std.exp() * eps
        return torch.tanh(u), (tanh_gaussian_log_prob(u, mean, log_std) if log_prob else None)


class SamplingNetwork(nn.Module):
    """SQL's state-conditioned sampler ``a = f_phi(xi; s)`` (SQL paper Section 3.2).

    Noise ``xi ~ N(0, I)`` of the action's dimension is fed with the state through an MLP; a
    tanh keeps actions inside the bounds ``[-1, 1]``.
    """

    def __init__(self, obs_dim: int, action_dim: int, hidden: tuple = (200, 200)):
        super().__init__()
        self.action_dim = action_dim
        self.net = mlp(obs_dim + action_dim, hidden, action_dim)

    def forward(self, obs: torch.Tensor, num_samples: int = 1,
                noise: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Return ``[B, num_samples, A]`` actions for ``[B, O]`` observations."""
        batch = obs.shape[0]
        if noise is None:
            noise = torch.randn(batch, num_samples, self.action_dim, device=obs.device,
                                generator=generator)
        elif noise.dim() == 2:  # a fixed noise set shared by every state (fine-tuning)
            noise = noise.unsqueeze(0).expand(batch, -1, -1)
        states = obs.unsqueeze(1).expand(-1, noise.shape[1], -1)
        return torch.tanh(self.net(torch.cat([states, noise], dim=-1)))


class PixelEncoder(nn.Module):
    """The image encoder of the SAC paper's D'Claw experiment (Section 7.3).

    Two convolutions with four 3x3 filters, each followed by 3x3 max-pooling, then the
    flattened features are concatenated with the proprioceptive inputs (joint positions and
    velocities); the fully connected layers of 256 that follow are the policy's and critics'
    MLPs. Images are ``uint8 [B, H, W, C]`` and scaled to [0, 1] here.
    """

    def __init__(self, image_shape: tuple, proprio_dim: int, filters: int = 4):
        super().__init__()
        height, width, channels = image_shape
        self.conv = nn.Sequential(
            nn.Conv2d(channels, filters, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3),
            nn.Conv2d(filters, filters, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3),
            nn.Flatten())
        with torch.no_grad():
            conv_dim = self.conv(torch.zeros(1, channels, height, width)).shape[-1]
        #: The image's features come first in the output, then the proprioceptive inputs.
        self.image_features = conv_dim
        self.out_features = conv_dim + proprio_dim

    def forward(self, image: torch.Tensor, proprio: torch.Tensor) -> torch.Tensor:
        """Return ``[B, out_features]`` features of ``image`` and ``proprio``."""
        pixels = image.permute(0, 3, 1, 2).float() / 255.0
        return torch.cat([self.conv(pixels), proprio], dim=-1)


def random_shift(images: torch.Tensor, pad: int, generator: torch.Generator | None = None
                 ) -> torch.Tensor:
    """Each image shifted by up to ``pad`` pixels each way, its edges repeated (DrQ).

    The random-shift augmentation of DrQ (Kostrikov, Yarats and Fergus 2021): pad by ``pad``
    repeating the border pixels, then crop at a random offset, one offset per image. Done as
    one gather of clamped pixel indices on the ``uint8 [B, H, W, C]`` batch, without building
    the padded images.
    """
    if pad <= 0:
        return images
    batch, height, width, channels = images.shape
    offsets = torch.randint(0, 2 * pad + 1, (batch, 2), generator=generator,
                            device=images.device) - pad
    rows = (torch.arange(height, device=images.device) + offsets[:, :1]).clamp_(0, height - 1)
    cols = (torch.arange(width, device=images.device) + offsets[:, 1:]).clamp_(0, width - 1)
    pixels = (rows[:, :, None] * width + cols[:, None, :]).view(batch, height * width, 1)
    return images.reshape(batch, height * width, channels).gather(
        1, pixels.expand(-1, -1, channels)).view(batch, height, width, channels)


class Encoder(nn.Module):
    """Observation to features, before a network's fully connected layers.

    The identity for flat observations; for a dict, the vectors concatenated and, when there is
    an image, the :class:`PixelEncoder` fused with them. Each network (the policy, the critic
    ensemble) has its own encoder, as in softlearning. The vectors named in ``ignore`` are not
    read (privileged measurements: ``SACConfig.privileged``).
    """

    def __init__(self, obs_spec, ignore: tuple = ()):
        super().__init__()
        self.spec = normalize_spec(obs_spec)
        self.image = image_key(self.spec)
        self.pixels = None
        if isinstance(self.spec, int):
            if ignore:
                raise ValueError(f'a flat observation has no keys to ignore ({list(ignore)})')
            self.vectors, self.out_features = [], self.spec
            return
        vectors = sorted(k for k, shape in self.spec.items() if len(shape) == 1)
        unknown = sorted(set(ignore) - set(vectors))
        if unknown:
            raise ValueError(f'cannot ignore {unknown}: not vectors of the observation '
                             f'(its vectors: {vectors})')
        self.vectors = [k for k in vectors if k not in ignore]
        vector_dim = sum(self.spec[k][0] for k in self.vectors)
        if self.image is None:
            self.out_features = vector_dim
        else:
            self.pixels = PixelEncoder(self.spec[self.image], vector_dim)
            self.out_features = self.pixels.out_features

    def forward(self, obs) -> torch.Tensor:
        """Return ``[B, out_features]`` features."""
        if isinstance(self.spec, int):
            return obs
        vectors = torch.cat([obs[k].float() for k in self.vectors], dim=-1) if self.vectors \
            else obs[self.image].new_zeros((obs[self.image].shape[0], 0), dtype=torch.float32)
        if self.pixels is None:
            return vectors
        return self.pixels(obs[self.image], vectors)
