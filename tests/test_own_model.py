"""Your own model (issue 13): flax.linen, flax.nnx and plain JAX functions as featviz Models.

References: flax's own ``capture_intermediates`` (linen) and direct calls of the submodules
(nnx) for the discovered layers; featviz.nonlin's rules applied by hand for the ReLU swap.
"""

import pathlib
import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import featviz
from featviz import nonlin, relu_swap
from featviz import objectives as O
from featviz._loop import program
from featviz.analysis import cam
from featviz.cli import main
from featviz.function_models import OwnModelError
from featviz.model import UnitOutOfRangeError, UnknownLayerError

SIZE = 16


class Block(nn.Module):
  features: int

  @nn.compact
  def __call__(self, x):
    return nn.relu(nn.Conv(self.features, (3, 3), strides=2)(x))


class CNN(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Conv(4, (3, 3))(x))
    x = Block(6)(x)
    return nn.Dense(5)(x.mean(axis=(1, 2)))


CNN_LAYERS = {"Conv_0": 4, "Block_0/Conv_0": 6, "Block_0": 6, "Dense_0": 5, "logits": 5}


_init = jax.jit(CNN().init)


def _variables(seed):
  return _init(jax.random.key(seed), jnp.zeros((1, SIZE, SIZE, 3)))


@pytest.fixture(scope="module")
def linen_model():
  return featviz.Model.from_flax(CNN(), _variables(0), image_size=SIZE)


@pytest.fixture(scope="module")
def photos():
  return np.random.default_rng(0).uniform(0, 1, (2, SIZE, SIZE, 3)).astype(np.float32)


def test_linen_layers_and_channels_are_found_and_match_flax_intermediates(linen_model, photos):
  assert dict(linen_model.spec.layers) == CNN_LAYERS
  assert not linen_model.spec.fixed_size  # a global-pool head takes any size
  got = linen_model.activations(photos)
  _, state = CNN().apply(
    _variables(0), jnp.asarray(photos), capture_intermediates=True, mutable=["intermediates"]
  )
  inter = state["intermediates"]
  want = {
    "Conv_0": inter["Conv_0"]["__call__"][0],
    "Block_0/Conv_0": inter["Block_0"]["Conv_0"]["__call__"][0],
    "Block_0": inter["Block_0"]["__call__"][0],
    "Dense_0": inter["Dense_0"]["__call__"][0],
    "logits": inter["__call__"][0],
  }
  for name, value in want.items():
    np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=1e-6, err_msg=name)


def test_layers_narrow_and_rename():
  model = featviz.Model.from_flax(
    CNN(), _variables(0), image_size=SIZE, layers={"block": "Block_0", "conv": "Conv_0"}
  )
  assert dict(model.spec.layers) == {"block": 6, "conv": 4}
  narrowed = featviz.Model.from_flax(CNN(), _variables(0), image_size=SIZE, layers=["Block_0"])
  assert list(narrowed.spec.layers) == ["Block_0"]
  with pytest.raises(UnknownLayerError, match="Block_0/Conv_0"):  # names the valid paths
    featviz.Model.from_flax(CNN(), _variables(0), image_size=SIZE, layers=["Block_9"])


def test_linen_renders_from_python_and_other_weights_reuse_the_program(linen_model):
  before = program.trace_count()
  settings = dict(steps=6, size=SIZE, transforms="none", progress_bar=False)
  first = featviz.render(linen_model, O.channel("Conv_0", [0, 1]), **settings)
  other = featviz.Model.from_flax(CNN(), _variables(1), image_size=SIZE)
  assert other.forward == linen_model.forward  # equal static parts: one compiled program
  second = featviz.render(other, O.channel("Conv_0", [2, 3]), **settings)
  assert program.trace_count() - before == 1
  for result in (first, second):
    assert result.images.shape == (2, SIZE, SIZE, 3)
    assert np.isfinite(result.history).all()
    assert (result.history[-1] > result.history[0]).all()  # ascent rises (no transforms: no noise)


def test_wrong_layer_and_unit_are_refused_before_compiling(linen_model):
  before = program.trace_count()
  with pytest.raises(UnknownLayerError, match="valid layers: Conv_0, Block_0/Conv_0, Block_0"):
    featviz.render(linen_model, O.channel("conv9", 0), steps=2, size=SIZE, progress_bar=False)
  with pytest.raises(UnitOutOfRangeError, match="valid units are 0-5"):
    featviz.render(linen_model, O.channel("Block_0", 6), steps=2, size=SIZE, progress_bar=False)
  assert program.trace_count() == before


def test_not_a_flax_module_and_missing_variables_are_refused():
  with pytest.raises(OwnModelError, match="from_function"):
    featviz.Model.from_flax(lambda x: x, {}, image_size=SIZE)
  with pytest.raises(OwnModelError, match="needs its variables"):
    featviz.Model.from_flax(CNN(), image_size=SIZE)


# ----------------------------------------------------------------------------- nnx


class NnxBlock(nnx.Module):
  def __init__(self, rngs):
    self.conv = nnx.Conv(3, 4, (3, 3), strides=2, rngs=rngs)

  def __call__(self, x):
    return jax.nn.relu(self.conv(x))


class NnxNet(nnx.Module):
  def __init__(self, rngs):
    self.blocks = nnx.List([NnxBlock(rngs)])
    self.head = nnx.Linear(4, 3, rngs=rngs)

  def __call__(self, x):
    for block in self.blocks:
      x = block(x)
    return self.head(x.mean(axis=(1, 2)))


def test_nnx_layers_match_direct_calls_of_its_submodules(photos):
  net = NnxNet(nnx.Rngs(0))
  model = featviz.Model.from_flax(net, image_size=SIZE)
  assert dict(model.spec.layers) == {"blocks/0/conv": 4, "blocks/0": 4, "head": 3, "logits": 3}
  got = jax.jit(lambda m, x: m.activations(x))(model, photos)  # state traced, merged in jit
  x = jnp.asarray(photos)  # value range (0, 1): the network sees the image as it is
  conv = net.blocks[0].conv(x)
  np.testing.assert_allclose(got["blocks/0/conv"], conv, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got["logits"], net(x), rtol=1e-5, atol=1e-6)
  assert type(net.blocks[0]) is NnxBlock  # the user's module is untouched


# ----------------------------------------------------------------------------- functions


def _apply(params, x):
  h = jnp.tanh(x @ params["w"])  # (B, H, W, 7)
  return {"hidden": h, "pooled": h.mean(axis=(1, 2)), "count": jnp.int32(3)}


def test_from_function_finds_channels_abstractly(photos):
  params = {"w": np.random.default_rng(1).normal(0, 0.5, (3, 7)).astype(np.float32)}
  model = featviz.Model.from_function(_apply, params, image_size=SIZE, layers=["hidden", "pooled"])
  assert dict(model.spec.layers) == {"hidden": 7, "pooled": 7}
  want = np.tanh(photos @ params["w"])
  np.testing.assert_allclose(model.activations(photos)["hidden"], want, rtol=1e-5, atol=1e-6)
  with pytest.raises(UnknownLayerError, match="hidden, pooled"):
    featviz.Model.from_function(_apply, params, image_size=SIZE, layers=["nope"])
  with pytest.raises(OwnModelError, match="count"):
    featviz.Model.from_function(_apply, params, image_size=SIZE, layers=["count"])


# ----------------------------------------------------------------------------- ReLU reach


class DeadFirstLayer(nn.Module):
  """A conv whose ReLU is dead on every [0, 1] image (bias -10), then a dense readout."""

  hand_written: bool = False
  bias: float = -10.0

  @nn.compact
  def __call__(self, x):
    h = nn.Conv(2, (1, 1), bias_init=nn.initializers.constant(self.bias))(x)
    h = jnp.maximum(h, 0) if self.hand_written else nn.relu(h)
    return nn.Dense(2)(h.mean(axis=(1, 2)))


def _first_step_gradient(model, ops, image):
  def loss(x):  # the loop descends minus the objective: Lucid's sign for the override
    return -model.activations(x, ("logits",), ops=ops)["logits"][:, 0].sum()

  return np.asarray(jax.jit(jax.grad(loss))(image))


def _by_hand(variables, image, relu):
  """The same network with ``relu`` from featviz.nonlin called directly: the reference."""
  p = variables["params"]
  h = jnp.einsum("bhwc,cd->bhwd", image, p["Conv_0"]["kernel"][0, 0]) + p["Conv_0"]["bias"]
  out = relu(h).mean(axis=(1, 2)) @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"]
  return -out[:, 0].sum()


@pytest.fixture(scope="module")
def dead():
  module = DeadFirstLayer()
  variables = module.init(jax.random.key(2), jnp.zeros((1, 8, 8, 3)))
  image = jnp.asarray(np.random.default_rng(3).uniform(0, 1, (1, 8, 8, 3)), jnp.float32)
  return module, variables, image


def test_redirected_relu_reaches_a_flax_models_dead_relu(dead):
  module, variables, image = dead
  model = featviz.Model.from_flax(module, variables, image_size=8)
  plain = _first_step_gradient(model, nonlin.STANDARD_OPS, image)
  redirected = _first_step_gradient(model, nonlin.redirecting(jnp.asarray(True)), image)
  assert not plain.any()  # the ReLU is dead: no gradient at all
  assert np.abs(redirected).sum() > 0
  want = jax.grad(lambda x: _by_hand(variables, x, lambda h: nonlin.redirected_relu(h, True)))
  np.testing.assert_allclose(redirected, jax.jit(want)(image), rtol=1e-5, atol=1e-7)


def test_guided_backprop_reaches_a_flax_model(linen_model, photos):
  plain, _ = cam.input_gradient(linen_model, photos[:1], 0, rule="plain")
  guided, _ = cam.input_gradient(linen_model, photos[:1], 0, rule="guided")
  assert np.abs(plain - guided).max() > 1e-3 * np.abs(plain).max()
  module = DeadFirstLayer(bias=0.0)  # live ReLUs: guided differs from plain where g < 0
  variables = module.init(jax.random.key(4), jnp.zeros((1, 8, 8, 3)))
  image = jnp.asarray(photos[:1, :8, :8])
  model = featviz.Model.from_flax(module, variables, image_size=8)
  got = _first_step_gradient(model, nonlin.GUIDED, image)
  want = jax.jit(jax.grad(lambda x: _by_hand(variables, x, nonlin.guided_relu)))(image)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_a_hand_written_relu_is_not_reached_as_documented(dead):
  module = DeadFirstLayer(hand_written=True)
  _, variables, image = dead
  model = featviz.Model.from_flax(module, variables, image_size=8)
  redirected = _first_step_gradient(model, nonlin.redirecting(jnp.asarray(True)), image)
  assert not redirected.any()  # jnp.maximum(x, 0) keeps its plain (zero) gradient
  assert "jnp.maximum(x, 0)" in relu_swap.__doc__


# ----------------------------------------------------------------------------- command line

MODEL_FILE = """
import flax.linen as nn
import jax
import jax.numpy as jnp

import featviz


class Net(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Conv(4, (3, 3), name="conv1")(x))
    return nn.Dense(3)(x.mean(axis=(1, 2)))


def build():
  v = Net().init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
  return featviz.Model.from_flax(Net(), v, image_size=16)


def broken():
  raise RuntimeError("no checkpoint here")


def not_a_model():
  return 42
"""


@pytest.fixture()
def model_file(tmp_path):
  path = tmp_path / "my_net.py"
  path.write_text(textwrap.dedent(MODEL_FILE))
  return path


def _cli(capsys, *argv):
  try:
    code = main(list(argv))
  except SystemExit as e:
    code = e.code
  return code, capsys.readouterr().err


@pytest.mark.parametrize(
  "target,spec,message",
  [
    ("{file}:build", "conv9:0", "valid layers: conv1, Dense_0, logits"),
    ("{file}:build", "conv1:4", "valid units are 0-3"),
    ("{dir}/missing.py:build", "conv1:0", "no such file"),
    ("{file}:nope", "conv1:0", "its functions: broken, build, not_a_model"),
    ("{file}:broken", "conv1:0", "RuntimeError: no checkpoint here"),
    ("{file}:not_a_model", "conv1:0", "returned a int"),
    ("no_such_package_xyz.mod:build", "conv1:0", "cannot import module"),
  ],
)
def test_cli_refuses_bad_models_with_exit_2(capsys, tmp_path, model_file, target, spec, message):
  target = target.format(file=model_file, dir=tmp_path)
  out = tmp_path / "out.png"
  code, err = _cli(capsys, "render", target, spec, "--steps", "2", "--out", str(out))
  assert code == 2 and message in err, err
  assert not out.exists()


def test_cli_weights_needs_a_factory_that_takes_them(capsys, tmp_path, model_file):
  weights = tmp_path / "w.npz"
  np.savez(weights, a=np.zeros(1))
  argv = ("render", f"{model_file}:build", "conv1:0", "--weights", str(weights))
  code, err = _cli(capsys, *argv)
  assert code == 2 and "takes no weights parameter" in err


def test_a_module_factory_loads_and_records_its_source(tmp_path, monkeypatch):
  from featviz.cli.common import load_source

  (tmp_path / "own_net_pkg").mkdir()
  (tmp_path / "own_net_pkg" / "__init__.py").write_text("")
  (tmp_path / "own_net_pkg" / "nets.py").write_text(textwrap.dedent(MODEL_FILE))
  monkeypatch.syspath_prepend(str(tmp_path))
  model = load_source("own_net_pkg.nets:build")
  assert model.metadata["source"] == "module:own_net_pkg.nets:build"
  assert dict(model.spec.layers) == {"conv1": 4, "Dense_0": 3, "logits": 3}


def test_sweep_manifest_records_the_source_and_a_resume_from_another_is_refused(
  tmp_path, model_file
):
  from featviz._sweep import run, store
  from featviz.cli.common import load_source

  model = load_source(f"{model_file}:build")
  settings = {"seed": 0}
  manifest = run.manifest(model, settings, {"conv1": (0, 1)}, None)
  assert manifest["model_source"] == f"file:{model_file.resolve()}:build"
  assert manifest["weights_sha256"] == store.weights_sha256(model)[0]
  store.Store(tmp_path / "sweep").open(manifest)
  copy = tmp_path / "copy.py"
  copy.write_text(model_file.read_text())
  other = run.manifest(load_source(f"{copy}:build"), settings, {"conv1": (0, 1)}, None)
  assert other["weights_sha256"] == manifest["weights_sha256"]  # same weights, other file
  with pytest.raises(store.SettingsMismatchError, match="model_source"):
    store.Store(tmp_path / "sweep").open(other)


def test_the_gallery_loads_a_sweeps_model_from_its_recorded_source(model_file):
  """``featviz gallery --dataset`` rebuilds the model a sweep recorded (it took zoo names only)."""
  from featviz._sweep import run, store
  from featviz.cli import cmd_gallery
  from featviz.cli.common import load_source
  from featviz.cli.errors import UsageError

  model = load_source(f"{model_file}:build")
  source = run.manifest(model, {"seed": 0}, {"conv1": (0, 1)}, None)["model_source"]
  again = cmd_gallery.load_model(source, None)
  assert store.weights_sha256(again) == store.weights_sha256(model)
  assert cmd_gallery.load_model("zoo:mnist_cnn", None).spec.name == "mnist_cnn"
  with pytest.raises(UsageError, match="built in Python"):
    cmd_gallery.load_model("python:my_net", None)


# ----------------------------------------------------------------------------- the example


def test_the_example_runs_and_its_factory_renders(capsys, tmp_path):
  example = pathlib.Path(__file__).resolve().parents[1] / "examples" / "own_flax_model.py"
  result = subprocess.run(
    [sys.executable, str(example), "grid.png", "2"],
    capture_output=True,
    text=True,
    timeout=300,
    cwd=tmp_path,
  )
  assert result.returncode == 0, result.stderr
  assert (tmp_path / "grid.png").exists() and "Block_0/Conv_0" in result.stdout
  out = tmp_path / "units.png"
  argv = ("render", f"{example}:build", "Block_0/Conv_0:0-3", "--steps", "2", "--size", "32")
  code, err = _cli(capsys, *argv, "--out", str(out), "--no-progress")
  assert code == 0, err
  assert out.exists()
