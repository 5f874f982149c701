# SPDX-License-Identifier: Apache-2.0
"""Soft Actor-Critic with automatic temperature tuning (Haarnoja et al. 2018, "SAC").

Equation numbers refer to the paper (../shared/papers/soft_actor_critic_haarnoja2018.txt).
The update is a function from a batch to a dict of metrics, with no I/O or logging inside.
"""

import copy
import dataclasses
import threading
import warnings

import numpy as np
import torch

from sac_robot.algorithms import gradients, optim
from sac_robot.algorithms.losses import policy_loss, q_loss, soft_q_target, temperature_loss
from sac_robot.algorithms.networks import QEnsemble, TanhGaussianPolicy, mlp, random_shift
from sac_robot.algorithms.observations import image_key, normalize_spec, to_tensor
from sac_robot.algorithms.replay import Batch


@dataclasses.dataclass
class SACConfig:
    """Hyperparameters; defaults are the paper's Table 1 unless noted."""

    hidden: tuple = (256, 256)
    """Hidden layer sizes of the policy and the critics (2 x 256 ReLU)."""
    actor_lr: float = 3e-4
    """Adam learning rate of the policy."""
    critic_lr: float = 3e-4
    """Adam learning rate of the critics."""
    alpha_lr: float = 3e-4
    """Adam learning rate of log alpha."""
    gamma: float = 0.99
    """Discount."""
    tau: float = 0.005
    """Soft target update rate: target <- (1 - tau) target + tau online, every update."""
    batch_size: int = 256
    """Minibatch size."""
    buffer_size: int = 1_000_000
    """Replay buffer capacity."""
    learning_starts: int = 5_000
    """Environment steps with uniform random actions before learning starts. Not in the paper;
    softlearning's default for its MuJoCo runs ("n_initial_exploration_steps")."""
    auto_alpha: bool = True
    """Tune the temperature by the dual objective (Eq. 17-18); False keeps ``alpha`` fixed."""
    alpha: float = 1.0
    """Initial temperature (fixed temperature when ``auto_alpha`` is False). softlearning
    starts at 1.0; the paper does not state it."""
    target_entropy: float | None = None
    """Entropy target; None means -dim(A) (Table 1)."""
    utd_ratio: int = 1
    """Gradient steps per environment step (Table 1: 1). 10-20 needs the settings below."""
    num_critics: int = 2
    """Q-functions in the ensemble: 2 (twin critics, the paper) or e.g. 10 (REDQ)."""
    num_target_critics: int = 2
    """Critics, drawn at random each update, whose minimum forms the target (REDQ's M)."""
    critic_dropout: float = 0.0
    """Dropout in the critics (DroQ uses 0.01 with layer norm, for utd_ratio 20)."""
    critic_layer_norm: bool = False
    """Layer norm after each hidden layer of the critics (DroQ)."""
    joint_update: bool = False
    """Compute the critic, policy and temperature gradients from the same parameters in one
    backward pass, then step all three, as the authors' softlearning implementation does;
    False follows Algorithm 1's order (the policy sees the just-updated critics)."""
    closed_form: bool = True
    """Take the gradients in closed form (``gradients.py``: backpropagation written out, no
    autograd graph) where the networks allow it: flat observations, no layer norm or dropout,
    float32. The same gradients as autograd up to float rounding, and faster updates; False (or
    other networks) uses autograd."""
    compile: bool = False
    """Compile the closed-form gradients with ``torch.compile`` (inductor, C++ kernels on the
    CPU): fused kernels around the same matrix products. The compiling (seconds for a process's
    first agent, less with inductor's disk cache warm, none for later agents) runs on a thread
    of its own from ``SAC.start_compiling()`` (call it before the warm-up steps: ``sac-robot
    train`` and the trainer node do), or in the first update. Needs a C++ compiler; without
    one the agent warns and runs them uncompiled. Only with ``closed_form``."""
    image_shift: int = 0
    """Random-shift augmentation of the images of every minibatch (DrQ: Kostrikov, Yarats and
    Fergus 2021): each observation's and next observation's image shifted by up to this many
    pixels, its edges repeated, drawn independently; 0: off. Only for observations with an
    image (DrQ pads 84 x 84 images by 4; 2 is the same share of a 32 x 32 one)."""
    shared_encoder: bool = False
    """One image encoder, the critics', trained by the critics' loss alone; the policy acts on
    its features detached and the target critics' heads read its features of the next
    observations (DrQ-v2: Yarats et al. 2022; SAC-AE before it): each observation encoded once
    an update instead of five times. The policy keeps a copy of the encoder, refreshed after
    every critic step, so that a policy exported alone acts the same. False: each network its
    own encoder trained by its own loss, as softlearning. Only for observations with an
    image."""
    privileged: tuple = ()
    """Observation keys (vectors) that no network reads: measurements the robot has while it
    learns but the policy is not to act on, such as the D'Claw pixel task's ``valve`` (the
    valve encoder's angle, as cos and sin). With ``encoder_loss`` 'privileged' or 'both' the
    shared encoder learns to predict them from what the networks do read."""
    encoder_loss: str = 'critic'
    """What trains the shared encoder: 'critic', the critics' TD loss (Eq. 5), as DrQ-v2;
    'privileged', predicting the ``privileged`` vectors alone (a head of two hidden layers of
    256 on its image features, squared error), the critics and the policy taking its features as
    constants; 'both', the TD loss and then a step of its own predicting them (as SAC-AE's
    decoder has its own step), so that the TD loss, about 10^4 on the D'Claw, does not drown
    the prediction. Predicting them teaches the image features the state the task hides in
    the image directly (privileged information while learning, as asymmetric actor-critic
    gives it to the critic: Pinto et al. 2018); on the D'Claw both learn alike
    (docs/benchmarks.md). Needs ``shared_encoder`` (and ``privileged`` keys but for
    'critic')."""
    bf16: bool = False
    """Run the networks' matrix products in bfloat16 (autocast); losses stay float32. Only on
    CPUs with AVX-512 BF16 or AMX (or a GPU): without bf16 units the products are emulated, and
    many times slower."""

    def __post_init__(self):
        k, e = self.num_target_critics, self.num_critics
        if not (2 <= k <= e or k == e == 1):
            raise ValueError('need 2 <= num_target_critics <= num_critics (or both 1)')
        if self.utd_ratio < 1 or not 0 < self.tau <= 1 or not 0 <= self.gamma <= 1:
            raise ValueError('need utd_ratio >= 1, 0 < tau <= 1 and 0 <= gamma <= 1')
        self.hidden = tuple(self.hidden)
        self.privileged = tuple(self.privileged)
        if self.encoder_loss not in ('critic', 'privileged', 'both'):
            raise ValueError("encoder_loss must be 'critic', 'privileged' or 'both', got "
                             f'{self.encoder_loss!r}')
        if self.encoder_loss != 'critic' and not (self.shared_encoder and self.privileged):
            raise ValueError(f'encoder_loss {self.encoder_loss!r} needs shared_encoder and '
                             'privileged keys to predict')


def polyak_update(target_params, online_params, tau: float):
    """``target <- target + tau (online - target)`` on every parameter, as one fused lerp."""
    with torch.no_grad():
        torch._foreach_lerp_(list(target_params), list(online_params), tau)


class SAC:
    """The SAC agent: policy, critic ensemble and its target, temperature, optimizers."""

    algorithm = 'sac'

    def __init__(self, obs_spec, action_dim: int, config: SACConfig | None = None,
                 device='cpu', seed: int | None = None):
        """Build the networks and optimizers.

        ``obs_spec``: the length of flat observations, or a dict spec (``observations.py``: an
        image and vectors, e.g. the D'Claw camera with joint positions and velocities).
        """
        self.config = config = config or SACConfig()
        self.obs_spec = normalize_spec(obs_spec)
        self.action_dim, self.device = action_dim, torch.device(device)
        if seed is not None:
            torch.manual_seed(seed)
        self.actor = TanhGaussianPolicy(self.obs_spec, action_dim, config.hidden,
                                        config.privileged).to(self.device)
        self.critic = QEnsemble(self.obs_spec, action_dim, config.hidden, config.num_critics,
                                config.critic_dropout, config.critic_layer_norm,
                                config.privileged).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        #: ``encoder_loss``'s head: the shared encoder's features -> the privileged vectors.
        self.aux_head = None
        if config.encoder_loss != 'critic':  # (from the image's features alone)
            size = sum(self.obs_spec[k][0] for k in config.privileged)
            self.aux_head = mlp(self.critic.encoder.pixels.image_features, (256, 256),
                                size).to(self.device)
        #: The observation's image, if any (augmented, encoded once for both networks).
        self.image = image_key(self.obs_spec)
        if (config.image_shift or config.shared_encoder) and self.image is None:
            raise ValueError('image_shift and shared_encoder are for observations with an '
                             f'image; this one has none ({self.obs_spec})')
        self.shared_encoder = config.shared_encoder
        if self.shared_encoder:  # (the policy's copy: no gradient of its own)
            self.actor.encoder.requires_grad_(False)
            self.sync_actor_encoder()
        self.log_alpha = torch.tensor(float(np.log(config.alpha)), device=self.device,
                                      requires_grad=config.auto_alpha)
        self.target_entropy = (-float(action_dim) if config.target_entropy is None
                               else float(config.target_entropy))
        self.actor_optimizer = optim.adam(
            [p for p in self.actor.parameters() if p.requires_grad], config.actor_lr)
        # (with encoder_loss 'privileged' the critics' loss does not reach the encoder)
        self.critic_optimizer = optim.adam(
            self.critic.net.parameters() if config.encoder_loss == 'privileged'
            else self.critic.parameters(), config.critic_lr)
        self.aux_optimizer = None if self.aux_head is None else optim.adam(
            [*self.critic.encoder.parameters(), *self.aux_head.parameters()], config.critic_lr)
        self.alpha_optimizer = optim.adam([self.log_alpha], config.alpha_lr)
        self._critic_params = list(self.critic.parameters())  # for the Polyak update
        self._target_params = list(self.critic_target.parameters())
        #: The agent's own random stream (policy noise, REDQ's critic subsets), checkpointed
        #: with it, so that an agent's updates do not depend on others in the process.
        self.generator = torch.Generator(device=self.device).manual_seed(
            seed if seed is not None else int(torch.randint(2**31, ())))
        self.gradient_steps = 0
        self._compiled = False
        #: The compiling, when ``compile`` asks for it: begun by ``start_compiling`` (on a
        #: thread of its own, beside the warm-up steps), or by the first update at the latest.
        self._compiling = None
        if config.compile and gradients.applicable(config, self.obs_spec):
            self._compiling = threading.Thread(target=self._compile, name='sac-compile',
                                               daemon=True)
        if config.bf16 and self.device.type == 'cpu' and \
                torch.backends.cpu.get_cpu_capability() not in ('AVX512', 'AVX512_BF16', 'AMX'):
            warnings.warn(f'bf16 on a CPU with {torch.backends.cpu.get_cpu_capability()} only: '
                          'bfloat16 matrix products are far slower than float32 here',
                          stacklevel=2)

    def _compile(self):
        self._compiled = gradients.compile_for(self, self.config.batch_size)

    def start_compiling(self):
        """Begin compiling the updates (``compile``) on a thread of its own, if not begun.

        Call it while the agent has other things to do (the random warm-up steps): the first
        update waits for what is left of it, so that every update is the compiled one and a
        run is the same whenever the compiler finished. Without ``compile``: nothing.
        """
        if self._compiling is not None and self._compiling.ident is None:
            self._compiling.start()

    def wait_compiled(self) -> bool:
        """Compile (or wait for the compiling begun); whether the updates are compiled."""
        if self._compiling is not None:
            self.start_compiling()
            self._compiling.join()
            self._compiling = None
        return self._compiled

    @torch.no_grad()
    def sync_actor_encoder(self):
        """Make the policy's copy of the shared encoder equal to the critics' one."""
        torch._foreach_copy_(list(self.actor.encoder.parameters()),
                             list(self.critic.encoder.parameters()))

    def _augmented(self, batch: Batch) -> Batch:
        """The minibatch with its images shifted (``image_shift``), or as it is."""
        pad = self.config.image_shift
        if not pad:
            return batch

        def shifted(obs):
            return {**obs, self.image: random_shift(obs[self.image], pad, self.generator)}
        return batch._replace(obs=shifted(batch.obs), next_obs=shifted(batch.next_obs))

    @property
    def alpha(self) -> float:
        """The current temperature."""
        return float(self.log_alpha.detach().exp())

    @torch.no_grad()
    def act(self, obs, deterministic: bool = False) -> np.ndarray:
        """Return actions in [-1, 1] for one observation or a batch (``[A]`` or ``[B, A]``)."""
        tensor, batched = to_tensor(obs, self.obs_spec, self.device)
        action, _ = self.actor(tensor, deterministic, self.generator, log_prob=False)
        action = action.cpu().numpy()
        return action if batched else action[0]

    def _target_members(self) -> torch.Tensor | None:
        """``num_target_critics`` members drawn at random (REDQ), or None: all of them (SAC)."""
        k, e = self.config.num_target_critics, self.config.num_critics
        if k == e:
            return None
        return torch.randperm(e, generator=self.generator, device=self.device)[:k]

    def _target_min(self, q: torch.Tensor) -> torch.Tensor:
        """Minimum over the target's members (``_target_members``)."""
        members = self._target_members()
        return (q if members is None else q.index_select(0, members)).min(dim=0).values

    @property
    def _policy_reduce(self) -> str:
        """'min' for SAC's twin critics in the policy objective; 'mean' for ensembles (REDQ)."""
        return 'min' if self.config.num_critics == 2 else 'mean'

    def update(self, batch: Batch, update_actor: bool = True) -> dict:
        """One gradient step of the critics, then (optionally) of the policy and alpha."""
        if gradients.applicable(self.config, self.obs_spec):
            return self._closed_form_update(batch, update_actor)
        batch = self._augmented(batch)
        with torch.autocast(self.device.type, torch.bfloat16, enabled=self.config.bf16):
            if self.shared_encoder:
                return self._shared_encoder_update(batch, update_actor)
            if self.config.joint_update and update_actor:
                return self._joint_update(batch)
            return self._sequential_update(batch, update_actor)

    @torch.no_grad()
    def _critic_target(self, batch: Batch, alpha: torch.Tensor) -> torch.Tensor:
        """Eq. 6's target, with the minimum of the target critics (one sample ``a'``)."""
        next_action, next_log_prob = self.actor(batch.next_obs, generator=self.generator)
        next_q = self._target_min(self.critic_target(batch.next_obs, next_action))
        return soft_q_target(next_q, next_log_prob, batch.reward, batch.terminated,
                             self.config.gamma, alpha)

    def _critic_loss(self, batch: Batch, alpha: torch.Tensor):
        """Eq. 5-6, with the minimum of the target critics in the target."""
        target = self._critic_target(batch, alpha)
        q = self.critic(batch.obs, batch.action)
        return q_loss(q, target), q

    def _policy_q(self, q_pi: torch.Tensor) -> torch.Tensor:
        """The critics' minimum for SAC's twin critics; their mean for larger ensembles (REDQ)."""
        return q_pi.min(dim=0).values if self._policy_reduce == 'min' else q_pi.mean(dim=0)

    def _policy_losses(self, batch: Batch, alpha: torch.Tensor):
        """Eq. 9 at the reparameterized action (Eq. 8), and Eq. 18 (None for a fixed alpha).

        The critics' parameters are constants here: their gradients would be thrown away.
        """
        action, log_prob = self.actor(batch.obs, generator=self.generator)
        q_pi = self._policy_q(self.critic(batch.obs, action, detach_params=True))
        actor_loss = policy_loss(alpha, log_prob, q_pi)
        alpha_loss = (temperature_loss(self.log_alpha, log_prob, self.target_entropy)
                      if self.config.auto_alpha else None)
        return actor_loss, alpha_loss, log_prob

    def _policy_noise(self, batch_size: int) -> torch.Tensor:
        """The policy's ``eps ~ N(0, I)``, drawn as ``TanhGaussianPolicy.forward`` draws it."""
        return torch.randn((batch_size, self.action_dim), generator=self.generator,
                           device=self.device)

    @torch.no_grad()
    def _closed_form_update(self, batch: Batch, update_actor: bool) -> dict:
        """``update`` with ``gradients.py``'s gradients; the same steps, the same random draws."""
        if self._compiling is not None:
            self.wait_compiled()
        if self._compiled:  # the layout they were compiled for: no recompiling
            batch = Batch(*(field.contiguous() for field in batch))
        target_fn, critic_fn, policy_fn = gradients.functions(self._compiled)
        alpha = self.log_alpha.detach().exp()
        eps = self._policy_noise(batch.next_obs.shape[0])
        target = target_fn(self.actor, self.critic_target, batch.next_obs, eps, batch.reward,
                           batch.terminated, self.config.gamma, alpha, self._target_members())
        critic_loss, q, critic_grads = critic_fn(self.critic, batch.obs, batch.action, target)
        joint = self.config.joint_update and update_actor
        if not joint:
            optim.step([(self.critic_optimizer, critic_grads)])
            polyak_update(self._target_params, self._critic_params, self.config.tau)
            self.gradient_steps += 1
            if not update_actor:
                return _metrics(critic_loss, q)
        actor_loss, log_prob, _, actor_grads, alpha_loss, alpha_grad = policy_fn(
            self.actor, self.critic, batch.obs, self._policy_noise(batch.obs.shape[0]), alpha,
            self._policy_reduce, self.log_alpha if self.config.auto_alpha else None,
            self.target_entropy)
        updates = [(self.actor_optimizer, actor_grads)]
        if alpha_grad is not None:
            updates.append((self.alpha_optimizer, [alpha_grad]))
        if joint:
            updates.append((self.critic_optimizer, critic_grads))
        optim.step(updates)
        if joint:
            polyak_update(self._target_params, self._critic_params, self.config.tau)
            self.gradient_steps += 1
        return _metrics(critic_loss, q, actor_loss, alpha_loss, alpha, log_prob)

    def _shared_encoder_update(self, batch: Batch, update_actor: bool) -> dict:
        """``update`` with one image encoder, the critics' (``shared_encoder``), as DrQ-v2.

        Each observation is encoded once per update: the next observations without gradient
        (their features serve the policy's next action and the target critics' heads, as in
        DrQ-v2, where the target has no encoder of its own), the observations with the critic
        loss's gradient, their features then constants for the policy and temperature losses
        (Eq. 9, 18). In Algorithm 1's order the policy sees the just-updated critics' heads;
        with ``joint_update`` all three gradients come from the same parameters.
        """
        alpha = self.log_alpha.detach().exp()
        with torch.no_grad():
            next_features = self.critic.encoder(batch.next_obs)
            next_action, next_log_prob = self.actor(None, generator=self.generator,
                                                    features=next_features)
            next_q = self._target_min(self.critic_target.head(next_features, next_action))
            target = soft_q_target(next_q, next_log_prob, batch.reward, batch.terminated,
                                   self.config.gamma, alpha)
        features = self.critic.encoder(batch.obs)
        q = self.critic.head(features.detach() if self.config.encoder_loss == 'privileged'
                             else features, batch.action)
        critic_loss = q_loss(q, target)
        aux_loss, aux_grads = None, None
        if self.aux_head is not None:  # (its gradients from the same features, stepped after)
            aux_loss = self._aux_loss(features, batch.obs)
            aux_grads = torch.autograd.grad(aux_loss, optim.parameters(self.aux_optimizer),
                                            retain_graph=True)
        joint = self.config.joint_update and update_actor
        if not joint:
            optim.minimize(critic_loss, [self.critic_optimizer])
            self._after_critic_step(aux_grads)
            if not update_actor:
                return _metrics(critic_loss, q, aux_loss=aux_loss)
        features = features.detach()
        action, log_prob = self.actor(None, generator=self.generator, features=features)
        q_pi = self._policy_q(self.critic.head(features, action, detach_params=True))
        actor_loss = policy_loss(alpha, log_prob, q_pi)
        alpha_loss = (temperature_loss(self.log_alpha, log_prob, self.target_entropy)
                      if self.config.auto_alpha else None)
        loss, optimizers = actor_loss, [self.actor_optimizer]
        if alpha_loss is not None:
            loss, optimizers = loss + alpha_loss, optimizers + [self.alpha_optimizer]
        if joint:
            loss, optimizers = loss + critic_loss, optimizers + [self.critic_optimizer]
        optim.minimize(loss, optimizers)
        if joint:
            self._after_critic_step(aux_grads)
        return _metrics(critic_loss, q, actor_loss, alpha_loss, alpha, log_prob, aux_loss)

    def _aux_loss(self, features: torch.Tensor, obs: dict) -> torch.Tensor:
        """``encoder_loss``'s prediction loss: squared error of the privileged vectors."""
        truth = torch.cat([obs[k].float() for k in self.config.privileged], dim=-1)
        image = features[:, :self.critic.encoder.pixels.image_features]
        return (self.aux_head(image).float() - truth).pow(2).sum(-1).mean()

    def _after_critic_step(self, aux_grads=None):
        """After a critic step: the encoder's own step, Polyak, the policy's copy, the count."""
        if aux_grads is not None:
            optim.step([(self.aux_optimizer, list(aux_grads))])
        polyak_update(self._target_params, self._critic_params, self.config.tau)
        self.sync_actor_encoder()
        self.gradient_steps += 1

    def _joint_update(self, batch: Batch) -> dict:
        """All three gradients from the same parameters, one backward pass, three steps."""
        alpha = self.log_alpha.detach().exp()
        critic_loss, q = self._critic_loss(batch, alpha)
        actor_loss, alpha_loss, log_prob = self._policy_losses(batch, alpha)
        loss = critic_loss + actor_loss
        optimizers = [self.actor_optimizer, self.critic_optimizer]
        if alpha_loss is not None:
            loss = loss + alpha_loss
            optimizers.append(self.alpha_optimizer)
        optim.minimize(loss, optimizers)
        polyak_update(self._target_params, self._critic_params, self.config.tau)
        self.gradient_steps += 1
        return _metrics(critic_loss, q, actor_loss, alpha_loss, alpha, log_prob)

    def _sequential_update(self, batch: Batch, update_actor: bool) -> dict:
        """Algorithm 1's order: critics (and their targets), then policy, then temperature."""
        alpha = self.log_alpha.detach().exp()
        critic_loss, q = self._critic_loss(batch, alpha)
        optim.minimize(critic_loss, [self.critic_optimizer])
        polyak_update(self._target_params, self._critic_params, self.config.tau)
        self.gradient_steps += 1
        if not update_actor:
            return _metrics(critic_loss, q)
        actor_loss, alpha_loss, log_prob = self._policy_losses(batch, alpha)
        if alpha_loss is None:
            optim.minimize(actor_loss, [self.actor_optimizer])
        else:
            # One backward pass for both: alpha is a constant in the policy's loss and log_prob
            # one in the temperature's, so each gradient is the one its own loss gives alone.
            optim.minimize(actor_loss + alpha_loss, [self.actor_optimizer, self.alpha_optimizer])
        return _metrics(critic_loss, q, actor_loss, alpha_loss, alpha, log_prob)

    # Checkpoint support: every tensor, and the optimizers, by name.
    def modules(self) -> dict:
        """Return the networks by name (for checkpoints and policy export)."""
        modules = {'actor': self.actor, 'critic': self.critic,
                   'critic_target': self.critic_target}
        if self.aux_head is not None:
            modules['aux_head'] = self.aux_head
        return modules

    def optimizers(self) -> dict:
        """Return the optimizers by name."""
        optimizers = {'actor': self.actor_optimizer, 'critic': self.critic_optimizer,
                      'alpha': self.alpha_optimizer}
        if self.aux_optimizer is not None:
            optimizers['aux'] = self.aux_optimizer
        return optimizers

    def extra_tensors(self) -> dict:
        """Return tensors outside the modules (log alpha)."""
        return {'log_alpha': self.log_alpha}


def _metrics(critic_loss, q, actor_loss=None, alpha_loss=None, alpha=None,
             log_prob=None, aux_loss=None) -> dict:
    """The update's metrics as plain floats (the policy's only when it was updated)."""
    metrics = {'loss/critic': critic_loss, 'q/mean': q.mean()}
    if aux_loss is not None:
        metrics['loss/aux'] = aux_loss
    if actor_loss is not None:
        metrics.update({'loss/actor': actor_loss, 'alpha': alpha, 'entropy': -log_prob.mean()})
    if alpha_loss is not None:
        metrics['loss/alpha'] = alpha_loss
    return {k: float(v.detach()) for k, v in metrics.items()}
