# SPDX-License-Identifier: Apache-2.0
"""The robots as URDF, generated from their MuJoCo models, and their links' transforms.

rviz, robot_state_publisher and MoveIt read a robot as URDF (``robot_description``); our
robots are MJCF. :func:`kinematics` reads the compiled MuJoCo model once (so the URDF is kept
equal to the MJCF by construction: every body a link, every hinge a revolute joint with the
MJCF's axis and range, every body with no joint a fixed one, the sensors' sites and the
cameras fixed child links), :func:`urdf` writes it, and :func:`link_transforms` turns joint
positions into each joint's parent -> child transform, as robot_state_publisher does.

URDF describes trees. The Minitaur's legs are closed chains (five-bar linkages closed at the
foot by an equality constraint in the MJCF): the URDF keeps MuJoCo's tree, and the passive
knee angles come from the motor angles by the linkage's geometry (the description's
``passive_joints``: :func:`sac_robot.robots.minitaur.knee_positions`), so every link has a
transform.

Frames follow REP 105: a floating robot's root body is ``base_link`` (its pose in ``world``
comes from motion capture), a fixed robot's links hang from ``world``; a camera's link is its
optical frame (z forward, x right, y down, REP 103), named as the sensor's ``frame``. No ROS
here: plain numpy and MuJoCo.
"""

import dataclasses
import functools
import importlib
import math
import xml.etree.ElementTree as ElementTree

import numpy as np

#: MuJoCo's joint and geometry type numbers (mjtJoint, mjtGeom).
FREE, HINGE, SLIDE = 0, 3, 2
SPHERE, CAPSULE, CYLINDER, BOX = 2, 3, 5, 6


@dataclasses.dataclass(frozen=True)
class Joint:
    """One URDF joint: ``child``'s frame in ``parent``'s at zero position, and its motion."""

    name: str
    #: revolute, continuous, prismatic or fixed.
    type: str
    parent: str
    child: str
    #: 4 x 4 homogeneous transform of the child's frame in the parent's at position 0.
    origin: np.ndarray
    #: Unit axis in the child's frame (moving joints).
    axis: tuple = (0.0, 0.0, 1.0)
    #: (lower, upper) for revolute and prismatic joints.
    limits: tuple | None = None


@dataclasses.dataclass(frozen=True)
class Visual:
    """A shape drawn on a link: URDF ``box`` (full sizes), ``sphere``, ``cylinder``."""

    link: str
    shape: str
    #: box: (x, y, z) full lengths; sphere: (radius,); cylinder: (radius, length).
    size: tuple
    origin: np.ndarray
    rgba: tuple


@dataclasses.dataclass(frozen=True)
class Kinematics:
    """A robot's links and joints, in tree order (a parent before its children)."""

    name: str
    root: str
    links: tuple
    joints: tuple
    visuals: tuple

    def moving(self) -> tuple:
        """The names of the joints that move (not fixed)."""
        return tuple(j.name for j in self.joints if j.type != 'fixed')


def transform(position, quaternion) -> np.ndarray:
    """4 x 4 homogeneous transform from a position and a ``[w, x, y, z]`` quaternion."""
    w, x, y, z = (float(v) for v in quaternion)
    matrix = np.eye(4)
    matrix[:3, :3] = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]]
    matrix[:3, 3] = position
    return matrix


def quaternion(matrix: np.ndarray) -> np.ndarray:
    """``[w, x, y, z]`` of a rotation matrix (the 3 x 3 block of ``matrix``), w >= 0."""
    m = np.asarray(matrix, np.float64)[:3, :3]
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = 2.0 * math.sqrt(trace + 1.0)
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * math.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k])
        q = [0.0] * 4
        q[0] = (m[k, j] - m[j, k]) / s
        q[1 + i] = 0.25 * s
        q[1 + j] = (m[j, i] + m[i, j]) / s
        q[1 + k] = (m[k, i] + m[i, k]) / s
    q = np.array(q)
    return q / np.linalg.norm(q) * (1 if q[0] >= 0 else -1)


def _rotation(axis, angle: float) -> np.ndarray:
    x, y, z = axis
    c, s = math.cos(angle), math.sin(angle)
    matrix = np.eye(4)
    matrix[:3, :3] = [
        [c + x * x * (1 - c), x * y * (1 - c) - z * s, x * z * (1 - c) + y * s],
        [y * x * (1 - c) + z * s, c + y * y * (1 - c), y * z * (1 - c) - x * s],
        [z * x * (1 - c) - y * s, z * y * (1 - c) + x * s, c + z * z * (1 - c)]]
    return matrix


#: A camera's MuJoCo frame (looking along -z, y up) -> its ROS optical frame (z forward, y down).
OPTICAL = transform((0, 0, 0), (0, 1, 0, 0))


def kinematics(model, name: str, frames=()) -> Kinematics:
    """The links and joints of a compiled MuJoCo ``model``.

    The root body of a floating robot (a free joint) becomes ``base_link``; the world body
    ``world``. Mocap bodies (task markers) and their geometry are left out, as are planes and
    collision-only geometry (group 3, as our models put it).
    ``frames``: names of sites and cameras (the sensors' frames): each becomes a fixed link of
    that name (a camera's in its optical orientation); names of links are skipped.
    """
    def body_name(i: int) -> str:
        if i == 0:
            return 'world'
        if model.body_jntnum[i] and model.jnt_type[model.body_jntadr[i]] == FREE:
            return 'base_link'
        return model.body(i).name

    floating = any(model.jnt_type[j] == FREE for j in range(model.njnt))
    links, joints, visuals = [], [], []
    for i in range(0 if not floating else 1, model.nbody):
        if model.body_mocapid[i] >= 0:
            continue
        link = body_name(i)
        links.append(link)
        if i == 0 or link == 'base_link':
            continue
        origin = transform(model.body_pos[i], model.body_quat[i])
        parent = body_name(int(model.body_parentid[i]))
        count = int(model.body_jntnum[i])
        if count > 1:
            raise ValueError(f'{name}: body {link!r} has {count} joints; URDF takes one')
        if count == 0:
            joints.append(Joint(f'{link}_fixed', 'fixed', parent, link, origin))
            continue
        j = int(model.body_jntadr[i])
        if np.linalg.norm(model.jnt_pos[j]) > 1e-9:
            raise ValueError(f'{name}: joint {model.joint(j).name!r} is off its body origin')
        kind = {HINGE: 'revolute', SLIDE: 'prismatic'}.get(int(model.jnt_type[j]))
        if kind is None:
            raise ValueError(f'{name}: joint {model.joint(j).name!r} is neither a hinge nor a '
                             'slide')
        limits = tuple(float(v) for v in model.jnt_range[j]) if model.jnt_limited[j] else None
        if kind == 'revolute' and limits is None:
            kind = 'continuous'
        joints.append(Joint(model.joint(j).name, kind, parent, link, origin,
                            tuple(float(v) for v in model.jnt_axis[j]), limits))
    kept = set(links)
    for g in range(model.ngeom):
        link = body_name(int(model.geom_bodyid[g]))
        kind, size = int(model.geom_type[g]), model.geom_size[g]
        if (link not in kept or model.geom_rgba[g][3] == 0 or model.geom_group[g] == 3
                or kind not in (SPHERE, CAPSULE, CYLINDER, BOX)):  # (group 3: collision)
            continue
        shape, dims = {SPHERE: ('sphere', (size[0],)),
                       CAPSULE: ('cylinder', (size[0], 2 * (size[1] + size[0]))),
                       CYLINDER: ('cylinder', (size[0], 2 * size[1])),
                       BOX: ('box', tuple(2 * size[:3]))}[kind]
        visuals.append(Visual(link, shape, tuple(float(v) for v in dims),
                              transform(model.geom_pos[g], model.geom_quat[g]),
                              tuple(float(v) for v in model.geom_rgba[g])))
    for frame in frames:
        if frame in kept or frame == 'world':
            continue
        if _named(model, 'site', frame):
            site = model.site(frame)
            parent = body_name(int(site.bodyid[0]))
            origin = transform(site.pos, site.quat)
        elif _named(model, 'camera', frame):
            camera = model.camera(frame)
            parent = body_name(int(camera.bodyid[0]))
            origin = transform(camera.pos, camera.quat) @ OPTICAL
        else:
            raise ValueError(f'{name}: sensor frame {frame!r} is no body, site or camera')
        links.append(frame)
        kept.add(frame)
        joints.append(Joint(f'{frame}_fixed', 'fixed', parent, frame, origin))
    root = 'base_link' if floating else 'world'
    return Kinematics(name, root, tuple(links), tuple(joints), tuple(visuals))


def _named(model, kind: str, name: str) -> bool:
    try:
        getattr(model, kind)(name)
    except KeyError:
        return False
    return True


def _origin(element, matrix: np.ndarray):
    roll, pitch, yaw = rpy(matrix)
    ElementTree.SubElement(element, 'origin', xyz=' '.join(f'{v:.6g}' for v in matrix[:3, 3]),
                           rpy=f'{roll:.6g} {pitch:.6g} {yaw:.6g}')


def rpy(matrix: np.ndarray) -> tuple:
    """URDF's fixed-axis roll, pitch, yaw of a rotation (R = Rz(yaw) Ry(pitch) Rx(roll))."""
    m = matrix[:3, :3]
    pitch = math.asin(-max(-1.0, min(1.0, m[2, 0])))
    if abs(m[2, 0]) < 1 - 1e-9:
        return math.atan2(m[2, 1], m[2, 2]), pitch, math.atan2(m[1, 0], m[0, 0])
    return 0.0, pitch, math.atan2(-m[0, 1], m[1, 1])  # (gimbal lock: roll folded into yaw)


def urdf(robot: Kinematics) -> str:
    """The robot's URDF (what ``robot_description`` carries)."""
    root = ElementTree.Element('robot', name=robot.name)
    colors = {}
    for visual in robot.visuals:
        colors.setdefault(visual.rgba, f'color{len(colors)}')
    for rgba, name in colors.items():
        material = ElementTree.SubElement(root, 'material', name=name)
        ElementTree.SubElement(material, 'color', rgba=' '.join(f'{v:.3g}' for v in rgba))
    by_link = {}
    for visual in robot.visuals:
        by_link.setdefault(visual.link, []).append(visual)
    for link in robot.links:
        element = ElementTree.SubElement(root, 'link', name=link)
        for visual in by_link.get(link, ()):
            shape = ElementTree.SubElement(element, 'visual')
            _origin(shape, visual.origin)
            geometry = ElementTree.SubElement(shape, 'geometry')
            if visual.shape == 'box':
                ElementTree.SubElement(geometry, 'box',
                                       size=' '.join(f'{v:.6g}' for v in visual.size))
            elif visual.shape == 'sphere':
                ElementTree.SubElement(geometry, 'sphere', radius=f'{visual.size[0]:.6g}')
            else:
                ElementTree.SubElement(geometry, 'cylinder', radius=f'{visual.size[0]:.6g}',
                                       length=f'{visual.size[1]:.6g}')
            ElementTree.SubElement(shape, 'material', name=colors[visual.rgba])
    for joint in robot.joints:
        element = ElementTree.SubElement(root, 'joint', name=joint.name, type=joint.type)
        ElementTree.SubElement(element, 'parent', link=joint.parent)
        ElementTree.SubElement(element, 'child', link=joint.child)
        _origin(element, joint.origin)
        if joint.type != 'fixed':
            ElementTree.SubElement(element, 'axis', xyz=' '.join(f'{v:.6g}' for v in joint.axis))
        if joint.limits is not None:
            # (effort and velocity are required by the format; ours are not modelled here)
            ElementTree.SubElement(element, 'limit', lower=f'{joint.limits[0]:.6g}',
                                   upper=f'{joint.limits[1]:.6g}', effort='0', velocity='0')
    ElementTree.indent(root)
    return '<?xml version="1.0"?>\n' + ElementTree.tostring(root, encoding='unicode') + '\n'


def joint_transform(joint: Joint, position: float) -> np.ndarray:
    """The child's frame in the parent's with the joint at ``position`` (rad or m)."""
    if joint.type in ('revolute', 'continuous'):
        return joint.origin @ _rotation(joint.axis, position)
    if joint.type == 'prismatic':
        moved = np.eye(4)
        moved[:3, 3] = np.asarray(joint.axis) * position
        return joint.origin @ moved
    return joint.origin


def link_transforms(robot: Kinematics, positions: dict, fixed: bool = False) -> list:
    """``(parent, child, 4 x 4)`` of every moving joint (with ``fixed``, of the fixed ones too).

    ``positions``: joint name -> position; every moving joint must have one.
    """
    missing = [name for name in robot.moving() if name not in positions]
    if missing:
        raise KeyError(f'{robot.name}: no position for joint(s) {missing}')
    return [(j.parent, j.child, joint_transform(j, positions.get(j.name, 0.0)))
            for j in robot.joints if fixed or j.type != 'fixed']


def forward(robot: Kinematics, positions: dict) -> dict:
    """Every link's frame in the root's (``positions`` as :func:`link_transforms`)."""
    frames = {robot.root: np.eye(4)}
    for parent, child, matrix in link_transforms(robot, positions, fixed=True):
        frames[child] = frames[parent] @ matrix
    return frames


@functools.lru_cache(maxsize=None)
def robot_kinematics(robot: str) -> Kinematics:
    """The kinematics of a registered robot: its description's scene and sensor frames."""
    from sac_robot.robots import asset_path, import_mujoco
    from sac_robot.robots.description import describe
    description = describe(robot)
    if not description.scene:
        raise ValueError(f'the {robot} has no MuJoCo scene to make its URDF from')
    model = import_mujoco().MjModel.from_xml_path(asset_path(*description.scene))
    frames = [name for sensor in description.sensors.values()
              for name in (sensor.frame, sensor.tracked) if name]
    return kinematics(model, robot, frames)


def passive_positions(robot: str, positions: dict) -> dict:
    """``positions`` (joint name -> position) with the passive joints a tree needs added.

    From the description's ``passive_joints`` (the Minitaur's knees, from its motor angles by
    the linkage's geometry); a robot without passive joints: as they are.
    """
    from sac_robot.robots.description import describe
    target = describe(robot).passive_joints
    if not target:
        return dict(positions)
    module, function = target.split(':')
    return {**positions, **getattr(importlib.import_module(module), function)(positions)}
