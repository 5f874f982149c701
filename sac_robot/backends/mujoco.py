# SPDX-License-Identifier: Apache-2.0
"""The MuJoCo stand-ins of the robots, as backends: what the hardware would report, simulated.

A simulated backend differs from a real one in one way: time passes only when the driver says
so (:meth:`MujocoBackend.advance`, one control period of physics), which is what makes the
driver's lockstep clock possible. Everything else is the backend interface: ``read()`` reports
every sensor of the robot's description, in the fields of its message (joint states:
positions, velocities, efforts; the IMU: orientation ``[w, x, y, z]``, body rates,
acceleration; motion capture: position, orientation; the camera: its image), ``write()`` takes
joint position targets, ``reset()`` starts an episode from the backend's own random stream
(seeded by ``seed``; a reset with a seed starts the stream again).

MuJoCo is imported when a backend is made (:func:`sac_robot.robots.import_mujoco`), never by
importing this module.
"""

import numpy as np

from sac_robot.backends.interface import Backend, ResetResult
from sac_robot.robots.description import DCLAW, MINITAUR


class MujocoBackend(Backend):
    """What the simulated robots share: a random stream for resets, physics on demand."""

    #: Time passes only in :meth:`advance` (the driver may run it in lockstep).
    simulated = True

    def __init__(self, sim, seed: int = 0):
        self.sim = sim
        self.rng = np.random.default_rng(seed)
        #: Physics steps in one control period.
        self.substeps = int(round(self.description.control_period / sim.timestep))

    @property
    def hardware_id(self) -> str:
        """The simulation, for diagnostics."""
        return f'mujoco {self.description.name}'

    def write(self, targets) -> None:
        """Joint position targets (rad, description order), from now on.

        After the model's command latency, if it has one: each write is a command on the
        simulated wire.
        """
        self.sim.command(np.asarray(targets, np.float64))

    def advance(self) -> None:
        """One control period of physics."""
        self.sim.step(self.substeps)

    def reset(self, options: dict | None = None) -> ResetResult:
        """Start an episode; ``options['seed']`` (>= 0) restarts the random stream first."""
        seed = (options or {}).get('seed', -1)
        if seed is not None and seed >= 0:
            self.rng = np.random.default_rng(seed)
        self._reset_sim()
        self.write(self.description.hold_pose)
        return ResetResult(True)

    def _reset_sim(self):
        raise NotImplementedError

    def close(self) -> None:
        """Release the renderer, if any (in the thread that rendered)."""
        close = getattr(self.sim, 'close', None)
        if close is not None:
            close()


class MujocoMinitaur(MujocoBackend):
    """The Minitaur in MuJoCo: motor encoders, the IMU, motion capture of the base."""

    description = MINITAUR

    def __init__(self, seed: int = 0, latency: float = 0.0, randomize: bool = False):
        from sac_robot.robots.minitaur import MinitaurSim
        super().__init__(MinitaurSim(latency=latency), seed)
        #: Draw masses, friction, motor strength and damping at every reset.
        self.randomize = bool(randomize)

    @classmethod
    def from_parameters(cls, declare, logger=None) -> 'MujocoMinitaur':
        """Made from the driver's parameters (``declare(name, default, description)``)."""
        del logger
        return cls(seed=declare('seed', 0, 'Seed of the resets (randomisation).'),
                   latency=declare('latency', 0.0, 'Command latency in seconds (whole physics '
                                   'steps).'),
                   randomize=declare('randomize', False, 'Draw masses, friction, motor '
                                     'strength and damping at every reset.'))

    def _reset_sim(self):
        if self.randomize:
            self.sim.randomize(self.rng)
        self.sim.reset()

    def read(self) -> dict:
        """Every sensor of the description, in its message's fields."""
        sim = self.sim
        return {
            'joints': (sim.motor_angles(), sim.motor_velocities(), sim.motor_torques()),
            'imu': (sim.base_orientation(), sim.base_angular_velocity(),
                    np.array(sim.data.sensor('imu_accelerometer').data)),
            'mocap': sim.base_pose(),
        }


class MujocoDClaw(MujocoBackend):
    """The D'Claw in MuJoCo: nine servos, the valve encoder, and with ``pixels`` the camera."""

    description = DCLAW

    def __init__(self, seed: int = 0, pixels: bool = False, image_size: int = 32,
                 target_angle: float = np.pi):
        from sac_robot.robots.dclaw import DClawSim
        super().__init__(DClawSim(), seed)
        self.pixels, self.image_size = bool(pixels), int(image_size)
        #: Where the valve is to go (drawn as a marker, seen by the camera).
        self.target_angle = float(target_angle)

    @classmethod
    def from_parameters(cls, declare, logger=None) -> 'MujocoDClaw':
        """Made from the driver's parameters (``declare(name, default, description)``)."""
        del logger
        return cls(seed=declare('seed', 0, "Seed of the resets (the valve's start angle)."),
                   pixels=declare('pixels', False, 'Publish the 32 x 32 camera image.'))

    def _reset_sim(self):
        self.sim.reset(valve_angle=float(self.rng.uniform(-np.pi, np.pi)))
        self.sim.show_target(self.target_angle)

    @property
    def sensors(self) -> tuple:
        """The sensors it reports: the camera only with ``pixels``."""
        return ('joints', 'valve', 'camera') if self.pixels else ('joints', 'valve')

    def read(self) -> dict:
        """Every sensor it reports (:attr:`sensors`), in its message's fields."""
        sim = self.sim
        readings = {
            'joints': (sim.joint_positions(), sim.joint_velocities(), None),
            'valve': (np.array([sim.valve_angle()]), np.array([sim.valve_velocity()])),
        }
        if self.pixels:
            readings['camera'] = (sim.render(self.image_size, self.image_size),)
        return readings
