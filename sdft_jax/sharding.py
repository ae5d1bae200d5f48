"""Mesh construction and logical-axis sharding rules.

Axes: `data` (pure data parallel), `fsdp` (data parallel with parameters sharded), `tensor`
(heads / MLP / vocab). Meshes are built with `AxisType.Auto` explicitly: `jax.make_mesh`
defaults to Explicit axes now, and the project uses classic GSPMD propagation.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

# Logical axis name -> mesh axis (or tuple of axes, or None = replicated).
TRAIN_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", BATCH_AXES),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("q_heads", "tensor"),
    ("kv_heads", "tensor"),
    ("mlp", "tensor"),
    ("layers", None),
    ("norm", None),
    ("seq", None),
)


# Decoding reads every weight once per token: gathered over fsdp once per rollout, so the decode
# loop holds no all-gather (step.py). Heads and the MLP stay sharded over tensor (their partial
# sums are all-reduced per layer, as in any tensor-parallel forward); the embedding and LM head are
# whole on every device, so a token's lookup and its sampling over the vocabulary need no gather.
DECODE_RULES: tuple[tuple[str, Any], ...] = tuple((k, None if k in ("embed", "vocab") else v) for k, v in TRAIN_RULES)


class MeshError(ValueError):
    """A mesh or sharding that cannot work with the devices or the tensors."""


def resolve_mesh_shape(data: int = 1, fsdp: int = -1, tensor: int = 1,
                       num_devices: int | None = None) -> tuple[int, int, int]:
    """Fills the single -1 axis with the remaining devices; checks the product."""
    n = jax.device_count() if num_devices is None else num_devices
    sizes = {"data": data, "fsdp": fsdp, "tensor": tensor}
    free = [k for k, v in sizes.items() if v == -1]
    if len(free) > 1:
        raise MeshError(f"mesh: at most one axis may be -1, got {free}")
    for k, v in sizes.items():
        if v != -1 and v < 1:
            raise MeshError(f"mesh.{k}={v}: sizes must be >= 1 (or -1 for 'the rest')")
    fixed = math.prod(v for v in sizes.values() if v != -1)
    if free:
        if n % fixed:
            raise MeshError(f"mesh: {n} devices are not divisible by the fixed axes "
                            f"{ {k: v for k, v in sizes.items() if v != -1} } (product {fixed})")
        sizes[free[0]] = n // fixed
    if math.prod(sizes.values()) != n:
        raise MeshError(f"mesh: data*fsdp*tensor = {sizes['data']}*{sizes['fsdp']}*{sizes['tensor']} "
                        f"= {math.prod(sizes.values())} but there are {n} devices")
    return sizes["data"], sizes["fsdp"], sizes["tensor"]


def make_mesh(data: int = 1, fsdp: int = -1, tensor: int = 1,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
    devices = list(jax.devices() if devices is None else devices)
    shape = resolve_mesh_shape(data, fsdp, tensor, len(devices))
    # tensor innermost: it is the axis with the most communication.
    grid = np.asarray(devices).reshape(shape)
    return Mesh(grid, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))


def single_device_mesh() -> Mesh:
    return make_mesh(1, 1, 1, devices=jax.devices()[:1])


def logical_to_spec(axes: Sequence[str | None], rules=TRAIN_RULES) -> P:
    table = dict(rules)
    out = []
    for name in axes:
        if name is not None and name not in table:
            raise MeshError(f"logical axis {name!r} has no sharding rule")
        out.append(None if name is None else table[name])
    return P(*out)


def _axis_size(mesh: Mesh, entry) -> int:
    if entry is None:
        return 1
    names = entry if isinstance(entry, tuple) else (entry,)
    return math.prod(mesh.shape[n] for n in names)


def named_sharding(mesh: Mesh, axes: Sequence[str | None], shape: Sequence[int] | None = None,
                   rules=TRAIN_RULES, name: str = "array") -> NamedSharding:
    spec = logical_to_spec(axes, rules)
    if shape is not None:
        if len(shape) != len(spec):
            raise MeshError(f"{name}: shape {tuple(shape)} has {len(shape)} dims but logical axes {tuple(axes)}")
        for dim, (size, entry, logical) in enumerate(zip(shape, spec, axes)):
            parts = _axis_size(mesh, entry)
            if size % parts:
                raise MeshError(
                    f"{name}: dimension {dim} ({logical}) of size {size} is not divisible by mesh "
                    f"axes {entry} of size {parts}; choose a mesh whose {entry} size divides {size}")
    return NamedSharding(mesh, spec)


def tree_shardings(mesh: Mesh, logical_tree, abstract_tree, rules=TRAIN_RULES):
    """NamedSharding for every leaf of `abstract_tree` from the matching logical-axes tuple."""
    def one(path, axes, leaf):
        return named_sharding(mesh, axes, leaf.shape, rules, name=jax.tree_util.keystr(path))
    return jax.tree_util.tree_map_with_path(
        one, logical_tree, abstract_tree, is_leaf=lambda x: isinstance(x, tuple))


def batch_sharding(mesh: Mesh, ndim: int = 2) -> NamedSharding:
    """Leading batch dimension over (data, fsdp); the rest replicated."""
    return NamedSharding(mesh, P(BATCH_AXES, *([None] * (ndim - 1))))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def check_batch_divisible(batch_size: int, mesh: Mesh, name: str = "batch") -> None:
    parts = _axis_size(mesh, BATCH_AXES)
    if batch_size % parts:
        raise MeshError(f"{name}={batch_size} is not divisible by the data-parallel mesh size "
                        f"data*fsdp={parts}")


def traced_under(mesh, fn):
    """fn traced with `mesh` as the abstract mesh: kernels XLA cannot partition (splash) shard_map
    themselves over it (model/attention.py). mesh None = as is."""
    if mesh is None:
        return fn

    @functools.wraps(fn)
    def under(*args):
        with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
            return fn(*args)
    return under
