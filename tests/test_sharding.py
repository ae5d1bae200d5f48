"""Meshes, logical rules, and sharded == unsharded forward on 8 virtual CPU devices."""
import jax
import numpy as np
import pytest
from jax.sharding import AxisType

from sdft_jax import sharding as shd
from sdft_jax.model import load_pretrained
from tests import hf_fixtures as hf


def test_eight_cpu_devices():
    assert jax.device_count() == 8


@pytest.mark.parametrize("shape", [(8, 1, 1), (2, 2, 2), (1, 4, 2)])
def test_sharded_forward_equals_unsharded(tiny_qwen2, shape):
    tokens, mask = hf.left_padded_batch(batch=8, length=16)
    single = np.asarray(load_pretrained(tiny_qwen2, dtype="float32")(tokens, mask))
    mesh = shd.make_mesh(*shape)
    assert mesh.axis_types == (AxisType.Auto,) * 3
    model = load_pretrained(tiny_qwen2, dtype="float32", mesh=mesh)
    # Parameters really are distributed as the rules say.
    q = model.params["layers"]["q"]
    assert q.sharding.spec == shd.logical_to_spec(("layers", "embed", "q_heads"))
    assert len(q.addressable_shards) == 8
    batch_sh = shd.batch_sharding(mesh)
    out = model.apply(model.params, jax.device_put(tokens, batch_sh), jax.device_put(mask, batch_sh))
    diff = float(np.abs(np.asarray(out) - single)[mask.astype(bool)].max())
    print(f"mesh {shape}: max |sharded - unsharded| = {diff:.2e}")
    assert diff < 1e-5


def test_mesh_minus_one_fills_the_rest():
    assert shd.resolve_mesh_shape(2, -1, 2, num_devices=8) == (2, 2, 2)
    assert shd.make_mesh(1, -1, 1).shape["fsdp"] == 8


@pytest.mark.parametrize("sizes,match", [
    ((3, -1, 1), "not divisible"),
    ((2, 2, 1), "= 4 but there are 8 devices"),
    ((-1, -1, 1), "at most one axis"),
    ((0, 8, 1), "mesh.data=0"),
])
def test_bad_mesh_is_a_clear_error(sizes, match):
    with pytest.raises(shd.MeshError, match=match):
        shd.make_mesh(*sizes)


def test_heads_not_divisible_by_tensor_axis(tiny_qwen2):
    mesh = shd.make_mesh(2, 1, 4)  # tiny model has 2 kv heads
    with pytest.raises(shd.MeshError, match="num_key_value_heads=2"):
        load_pretrained(tiny_qwen2, dtype="float32", mesh=mesh)


def test_dimension_not_divisible_names_the_parameter():
    mesh = shd.make_mesh(1, 8, 1)
    with pytest.raises(shd.MeshError, match=r"\['embed'\].*dimension 1 \(embed\) of size 60"):
        shd.tree_shardings(mesh, {"embed": ("vocab", "embed")},
                           {"embed": jax.ShapeDtypeStruct((16, 60), np.float32)})


def test_batch_divisibility():
    mesh = shd.make_mesh(2, 2, 2)
    shd.check_batch_divisible(8, mesh)
    with pytest.raises(shd.MeshError, match="batch=6 .* data\\*fsdp=4"):
        shd.check_batch_divisible(6, mesh)
