# SPDX-License-Identifier: Apache-2.0
"""The simulated D'Claw with its valve: physics and named accessors, no task logic."""

import numpy as np

from sac_robot.robots import asset_path, import_mujoco
from sac_robot.robots.description import DCLAW

#: Joint names, finger by finger: a, b, c; joints 0 (top, swings in/out), 1, 2 (bend).
JOINTS = DCLAW.joints
#: The public reset pose of each finger: [0, -pi/3, pi/3] (ROBOTS.md).
RESET_POSE = DCLAW.reset_pose
#: The joints' mechanical limits (rad), as in dclaw.xml: J0 -0.45..1.35, J1 and J2 -2..2.
JOINT_RANGE = DCLAW.joint_range


#: MuJoCo, imported when the first simulation is made (:func:`import_mujoco`).
mujoco = None


class DClawSim:
    """MuJoCo D'Claw and valve (``assets/dclaw/scene_valve.xml``)."""

    def __init__(self, scene: str | None = None):
        global mujoco
        mujoco = import_mujoco()
        self.model = mujoco.MjModel.from_xml_path(scene or asset_path(*DCLAW.scene))
        self.data = mujoco.MjData(self.model)
        self._joint_qpos = np.array([self.model.joint(j).qposadr[0] for j in JOINTS])
        self._joint_qvel = np.array([self.model.joint(j).dofadr[0] for j in JOINTS])
        self._actuators = np.array([self.model.actuator(j).id for j in JOINTS])
        self._valve_qpos = self.model.joint('valve').qposadr[0]
        self._valve_qvel = self.model.joint('valve').dofadr[0]
        self._tips = [self.model.site(f'{finger}_tip').id for finger in 'abc']
        self._target = self.model.body('target').mocapid[0]
        self.joint_range = self.model.jnt_range[[self.model.joint(j).id for j in JOINTS]].copy()
        self._renderer = None

    @property
    def timestep(self) -> float:
        """Physics step in seconds (2.5 ms)."""
        return float(self.model.opt.timestep)

    def reset(self, joint_positions=RESET_POSE, valve_angle: float = 0.0):
        """Put the hand at ``joint_positions`` (at rest, targets there too) and the valve."""
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[self._joint_qpos] = joint_positions
        self.data.ctrl[self._actuators] = joint_positions
        self.data.qpos[self._valve_qpos] = valve_angle
        mujoco.mj_forward(self.model, self.data)

    def command(self, joint_targets):
        """Set the servos' position targets (rad), clipped to the joint limits."""
        self.data.ctrl[self._actuators] = np.clip(joint_targets, *self.joint_range.T)

    def step(self, substeps: int = 1):
        """Advance the physics by ``substeps`` steps."""
        mujoco.mj_step(self.model, self.data, nstep=substeps)

    def joint_positions(self) -> np.ndarray:
        """The nine joint angles (rad)."""
        return self.data.qpos[self._joint_qpos].copy()

    def joint_velocities(self) -> np.ndarray:
        """The nine joint velocities (rad/s)."""
        return self.data.qvel[self._joint_qvel].copy()

    def valve_angle(self) -> float:
        """The valve's angle (rad), unwrapped, as its encoder reports it."""
        return float(self.data.qpos[self._valve_qpos])

    def valve_velocity(self) -> float:
        """The valve's angular velocity (rad/s)."""
        return float(self.data.qvel[self._valve_qvel])

    def set_valve_angle(self, angle: float):
        """Turn the valve by hand (for tests and the scripted reset)."""
        self.data.qpos[self._valve_qpos] = angle
        self.data.qvel[self._valve_qvel] = 0.0
        mujoco.mj_forward(self.model, self.data)

    def fingertip_positions(self) -> np.ndarray:
        """The three fingertips' positions ``[3, 3]`` (m, world frame)."""
        return self.data.site_xpos[self._tips].copy()

    def show_target(self, angle: float):
        """Point the green target marker at ``angle`` (visual only)."""
        self.data.mocap_quat[self._target] = [np.cos(angle / 2), 0, 0, np.sin(angle / 2)]

    def render(self, width: int = 32, height: int = 32,
               camera: str = 'valve_camera') -> np.ndarray:
        """Return an ``[H, W, 3]`` uint8 image from ``camera`` (offscreen; see rendering.py)."""
        from sac_robot.robots.rendering import make_renderer
        if self._renderer is None or (self._renderer.width, self._renderer.height) != (
                width, height):
            if self._renderer is not None:
                self._renderer.close()
            self._renderer = make_renderer(self.model, height, width)
        self._renderer.update_scene(self.data, camera)
        # Shadows and reflections cost many times the frame under Mesa's software GL and add
        # nothing a 32 x 32 policy input needs.
        self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
        self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
        return self._renderer.render()

    def close(self):
        """Release the renderer's GL context."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
