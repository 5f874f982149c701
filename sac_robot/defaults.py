# SPDX-License-Identifier: Apache-2.0
"""Where the training tools differ from the library's defaults (no imports: launch files read it).

The library's :class:`~sac_robot.algorithms.sac.SACConfig` is the paper's Table 1. The training
tools, ``sac-robot train`` and the training graphs' trainer, run a few settings differently,
each measured in docs/benchmarks.md against the paper's:
"""

#: SAC's updates compiled (``torch.compile``, begun beside the warm-up steps): faster updates,
#: at the cost of seconds of compiling and no bit-for-bit equality with the eager update, which
#: a library user may rather not have. ``--set compile=false`` turns it off. The training
#: graphs read it from config/*_train.yaml (``agent.compile: true``).
TRAINER_DEFAULTS = {'compile': True}

#: SAC on an image task (the D'Claw's camera): one encoder, the critics', trained by their
#: loss, with the policy on its features detached (half the convolution work of an update),
#: and DrQ's random shift of the minibatch's images. ``--set shared_encoder=false --set
#: image_shift=0`` (or the trainer's ``agent.*`` parameters) is the paper's networks;
#: ``--set encoder_loss=privileged`` teaches the encoder the valve's angle instead.
PIXEL_DEFAULTS = {'shared_encoder': True, 'image_shift': 2, 'encoder_loss': 'critic'}
