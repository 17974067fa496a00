"""set_floats: a vector written through the packed wire form reads back exactly as float32."""

from __future__ import annotations

import numpy as np
import pytest
from synesthesia.protoconv import set_floats
from synesthesia.v1 import encoder_pb2, search_pb2


@pytest.mark.parametrize("dim", [0, 1, 31, 32, 384, 1024, 5000])  # lengths of 1- and 2-byte varints
def test_values_read_back_exactly(dim: int) -> None:
    v = np.random.default_rng(dim).standard_normal(dim)  # float64: cast to float32 like tolist()
    msg = search_pb2.Vector(model_id="m")
    set_floats(msg, "values", v)
    assert msg.model_id == "m"
    assert np.array_equal(np.asarray(msg.values, np.float32), v.astype(np.float32))
    again = search_pb2.Vector.FromString(msg.SerializeToString())
    plain = search_pb2.Vector(values=v.astype(np.float32).tolist(), model_id="m")
    assert again == plain and again.SerializeToString() == plain.SerializeToString()


def test_replaces_what_the_field_held_and_flattens() -> None:
    msg = encoder_pb2.Embedding(values=[9.0] * 5, id="a")
    set_floats(msg, "values", [[1, 2], [3, 4]])
    assert list(msg.values) == [1.0, 2.0, 3.0, 4.0] and msg.id == "a"
    item = search_pb2.StoredItem(id="b")
    with np.errstate(over="ignore"):  # 1e39 is inf in float32; kept: the server checks them
        set_floats(item, "vector", np.array([np.nan, np.inf, 1e39]))
    got = np.asarray(item.vector, np.float32)
    assert np.isnan(got[0]) and got[1] == np.inf and got[2] == np.inf


def test_refuses_what_is_not_a_float_vector() -> None:
    with pytest.raises(ValueError):
        set_floats(search_pb2.Vector(), "values", ["a", "b"])
    with pytest.raises(TypeError, match="not a repeated float field"):
        set_floats(search_pb2.Vector(), "model_id", [1.0])
    with pytest.raises(TypeError, match="not a repeated float field"):
        set_floats(search_pb2.QueryRequest(), "k", [1.0])
