"""Sweep: render every unit of some layers, on every local device, resumable.

``sweep(model, ["block5", "block10"], out="runs/effnet")`` renders one image per
channel (``objectives.channel(layer, units)``, unit indices as data), ``batch``
units per call of the compiled loop, and commits each chunk to the store
(``featviz._sweep.store``) before starting the next. Run it again with the same
settings and it renders only what is missing; with other settings it refuses
and lists what differs.

**One compile per layer.** Every chunk of a layer has the same batch size (the
last one is padded by repeating a unit) and differs only in its unit indices,
which are data: ``featviz._loop.program.trace_count()`` rises by one per layer.

**A unit's image depends on (key, layer, unit) alone.** Each image draws from
the key folded with its label (``featviz._loop.keys``), so neither ``batch``,
the padding of a chunk nor the device count changes it, up to the rounding of
batch-size-dependent kernels (``tests/test_sweep.py``, ``tests/test_sweep_multidevice.py``:
bitwise equal PNGs on CPU). A store may be resumed with another ``batch``.

**Every local device.** The batch axis is split over ``jax.local_devices()``
(``render(..., mesh=...)``). Each image has its own parameters and Adam is
elementwise, so images are independent: the only communication is the loop's
per-step finiteness check (two scalar all-reduces).

**Many hosts.** Start the same command on every host with ``--distributed``
(which calls ``jax.distributed.initialize()``; on Slurm, Open MPI and Cloud TPU
it finds its peers itself)::

  # host i of N, all writing to one shared folder:
  featviz sweep efficientnet_lite0 --all-layers --out /shared/sweep --distributed \\
      --coordinator host0:12345 --num-processes N --process-id i
  # or, with no JAX coordination at all (a job array):
  featviz sweep efficientnet_lite0 --all-layers --out /shared/sweep --share i/N

Process ``jax.process_index()`` of ``jax.process_count()`` takes every
``count``-th chunk (``featviz._sweep.partition``) and renders on its own devices only,
so hosts never wait for each other. They share ``DIR`` without clashing: a
chunk's files belong to the one process that renders it.

**Stopping rules.** With ``until_ratio=`` or ``until_plateau=`` the layers render by
continuous batching instead (``featviz._sweep.continuous``): each unit runs until its rule or
``config.steps`` stops it, and its slot takes the next unit; the index records its ``steps``
and why it ``stopped``, and the manifest the rule (a resume must stop units the same way).

**Quality.** With ``dataset=`` (a folder of photos) every unit gets the best
activation any photo gives it, the photo, and the ratio rendered / best
(``featviz._sweep.quality``); the summary reports the ratio's distribution per
layer.
"""

from __future__ import annotations

import json
import pathlib
import sys
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from featviz import home, objectives
from featviz._loop import api as render_api
from featviz._loop import keys as keys_lib
from featviz._loop import program
from featviz._loop.config import RenderConfig
from featviz._sweep import continuous, partition, stopping
from featviz._sweep import quality as sweep_quality
from featviz._sweep import store as store_lib
from featviz.model import Model

# Units per compiled call. 8 divides every channel count of the zoo's layers (so no padding);
# on an accelerator raise it until memory is full (throughput grows with the batch).
DEFAULT_BATCH = 8


def settings(config: RenderConfig, key: jax.Array, seed: int | None) -> dict[str, Any]:
  """What decides a sweep's images, as recorded in its manifest: the whole config, the seed
  (None when a key was given) and the key's raw data."""
  return {
    "config": config.to_dict(),
    "seed": seed,
    "key": [int(x) for x in np.asarray(jax.random.key_data(key)).ravel()],
    "key_impl": str(jax.random.key_impl(key)),
  }


def manifest(
  model: Model,
  settings: dict[str, Any],
  layers: dict[str, tuple[int, ...]],
  dataset: dict[str, Any] | None,
) -> dict[str, Any]:
  """The store's manifest for this run (``store.COMPARED`` fields must match on resume)."""
  digest, hashed = store_lib.weights_sha256(model)
  return {
    "format": store_lib.FORMAT,
    "model": model.spec.name,
    "model_source": store_lib.model_source(model),
    "weights_sha256": digest,
    "weights_hashed": hashed,
    "featviz_version": home.VERSION,
    "settings": settings,
    "dataset": dataset,
    "layers": {layer: model.spec.layers[layer] for layer in layers},
    "created": store_lib.now(),
  }


def _dataset_info(folder, size: int) -> dict[str, Any]:
  files = sweep_quality.dataset_files(folder)
  return {
    "files": len(files),
    "fingerprint": sweep_quality.fingerprint(files),
    "preprocess": f"shorter side to {size} px (bicubic), centre crop",
  }


def render_chunk(
  model: Model,
  chunk: partition.Chunk,
  todo: Sequence[int],
  config: RenderConfig,
  key: jax.Array,
  mesh: jax.sharding.Mesh,
  score_layers: Sequence[str] | None = None,
) -> tuple[dict[int, np.ndarray], list[dict[str, Any]]]:
  """Renders the ``todo`` units of ``chunk`` in one padded batch over ``mesh``.

  ``score_layers`` (default: the chunk's layer) are the layers the final images
  are scored on; a sweep passes all of its layers, so that one compiled scorer
  serves every chunk (one forward pass is little next to ``steps`` of them).

  Returns:
    ``({unit: image (H, W, C)}, rows)``; a row has the unit's slot, its
    objective at the first and last step (on the transformed image the step
    optimized), and ``final``: the objective on the final image without
    transforms, scored as ``sweep_quality`` scores photos.
  """
  n = partition.padded_batch(chunk.slots, mesh.size)
  units, keep = partition.slot_units(chunk, todo, n)
  result = render_api.render(
    model,
    objectives.channel(chunk.layer, np.asarray(units, np.int32)),
    config,
    key=key,
    progress_bar=False,
    mesh=mesh,
  )
  means = sweep_quality.channel_means(
    model, score_layers or [chunk.layer], result.images, program.batch_sharding(mesh), batch=n
  )[chunk.layer]
  pictures, rows = {}, []
  for slot, (unit, kept) in enumerate(zip(units, keep)):
    if not kept:
      continue
    pictures[unit] = result.images[slot]
    rows.append(
      {
        "layer": chunk.layer,
        "unit": unit,
        "chunk": chunk.index,
        "slot": slot,
        "steps": config.steps,
        "size": config.size,
        "start": float(result.history[0, slot]),
        "last_step": float(result.history[-1, slot]),
        "final": float(means[slot, unit]),
        "chunk_seconds": round(result.run_seconds, 3),
        "compile_seconds": round(result.compile_seconds, 3),
        "chunk_units": len(todo),
        "devices": mesh.size,
        "finished": store_lib.now(),
      }
    )
  return pictures, rows


def _add_quality(rows, best) -> None:
  for row in rows:
    top, photos = best[row["layer"]]
    row["dataset_max"] = float(top[row["unit"]])
    row["dataset_argmax"] = photos[row["unit"]]
    row["ratio"] = sweep_quality.ratio(row["final"], row["dataset_max"])


def sweep(
  model: Model,
  layers: Sequence[str],
  config: RenderConfig | None = None,
  *,
  out: str | pathlib.Path,
  units: tuple[int, int] | str | None = None,
  batch: int = DEFAULT_BATCH,
  key: jax.Array | None = None,
  seed: int = 0,
  dataset: str | pathlib.Path | None = None,
  progress_bar: bool = True,
  devices: Sequence[jax.Device] | None = None,
  process: tuple[int, int] | None = None,
  until_ratio: float | None = None,
  until_plateau: float | None = None,
  plateau_window: int = stopping.PLATEAU_WINDOW,
  **overrides,
) -> dict[str, Any]:
  """Renders every unit of ``layers`` into the store ``out``; resumes what is there.

  Args:
    model: a :class:`featviz.model.Model`.
    layers: layer names (any order; swept in forward order).
    out: the store folder (created; see ``featviz._sweep.store``).
    units: the channel range per layer, clipped to each layer's channels: a string as the
      CLI writes it, inclusive (``"0-7"``; ``partition.parse_units``), or ``(start, stop)``,
      half-open as Python's ``range``; ``None``: all channels.
    batch: units per compiled call (rounded up to a multiple of the devices with
      padding slots); the images depend on neither it nor the device count.
    key, seed: as :func:`featviz.render`: unit ``u`` of ``layer`` draws from the key folded
      with ``"layer:u"``.
    dataset: a folder of photos; adds dataset max, argmax and ratio per unit.
    progress_bar: a bar of units done / total, units/s and time left on stderr.
    devices: the devices to split each batch over; ``jax.local_devices()``.
    process: ``(index, count)`` of this process among those sharing the sweep;
      ``(jax.process_index(), jax.process_count())``.
    until_ratio: stop each unit once its activation on its un-transformed image reaches this
      many times the best photo's (needs ``dataset``); ``config.steps`` is then every unit's
      step limit. Units render by continuous batching (``featviz._sweep.continuous``): a
      finished unit's slot takes the next unit at once.
    until_plateau: stop each unit once its activation gained less than this fraction over the
      last ``plateau_window`` steps (continuous batching too).
    plateau_window: the steps ``until_plateau`` measures over.
    **overrides: fields of :class:`featviz.RenderConfig` to replace.

  Returns:
    The summary (also in ``out/summary.json``): per layer the units asked and
    done, the median final activation and, with a dataset, the ratio's
    min/median/max and fraction above 1; ``failed`` lists the chunks whose render
    went non-finite (their units stay missing; the other chunks are rendered).

  Raises:
    featviz.SettingsMismatchError: ``out`` holds a sweep with other settings.
  """
  config = (config if config is not None else RenderConfig()).replace(**overrides)
  rule = stopping.StopRule(
    max_steps=config.steps,
    every=stopping.check_interval(config.steps, config.chunk or continuous.CHECK_EVERY),
    until_ratio=None if until_ratio is None else float(until_ratio),
    until_plateau=None if until_plateau is None else float(until_plateau),
    plateau_window=int(plateau_window),
  )
  if rule.until_ratio is not None and dataset is None:
    raise stopping.StopRuleError(
      "until_ratio compares each unit with the best photo: give dataset= (a folder of photos)"
    )
  if rule.active:
    continuous.check_transforms(config)
  recorded = settings(config, keys_lib.as_key(key, seed), seed if key is None else None)
  if rule.active:  # a resume must stop units the same way; fixed-step stores have no "stop"
    recorded["stop"] = rule.to_dict()
  key = keys_lib.as_key(key, seed)  # (settings() refuses settings given as objects)
  if isinstance(units, str):
    units = partition.parse_units(units)
  if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
    raise ValueError(f"batch must be a positive integer, got {batch!r}")
  layers = model.layers_in_order(layers)
  if not layers:
    raise ValueError("name at least one layer to sweep")
  wanted = partition.layer_units(model.spec.layers, layers, units)
  render_api.check_network_size(model, config)  # before the store: bad input leaves nothing
  devices = list(devices) if devices is not None else jax.local_devices()
  mesh = jax.sharding.Mesh(np.asarray(devices), ("batch",))
  index, count = process if process is not None else (jax.process_index(), jax.process_count())

  store = store_lib.Store(out)
  info = _dataset_info(dataset, config.size) if dataset is not None else None
  # The photos are read before the store is: one that does not decode leaves no folder behind.
  loaded = None
  if dataset is not None:
    loaded = sweep_quality.load_dataset(dataset, config.size, model.spec.channels)
  store.open(manifest(model, recorded, wanted, info), writer=index == 0)
  if count == 1:  # alone on the store: what a killed run left half-written can go
    store.remove_temporaries()
  # Replicate the weights once; each chunk's device_put then finds them in place.
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  model = model.replace(weights=jax.device_put(model.weights, replicated))
  best = None
  if dataset is not None:
    # A sweep that stops units early scores its slots' images every few steps with the same
    # function (continuous.render_layer): scanning the photos at that batch makes the two one
    # program when the sweep has one layer (measured on EfficientNet-Lite0 block10, 264 photos
    # at 128 px, 2 CPU devices: 1.45-1.62 s at batch 8 against 1.52-1.75 s at 32).
    scan = min(batch, max(map(len, wanted.values()))) if rule.active else sweep_quality.SCORE_BATCH
    score_batch = partition.padded_batch(scan, mesh.size)
    best = sweep_quality.dataset_best(
      model,
      layers,
      dataset,
      config.size,
      program.batch_sharding(mesh),
      score_batch,
      loaded,
      progress_bar=progress_bar,
    )

  done = store.rows(layers)
  work = partition.for_process(partition.chunks(wanted, batch), index, count)
  total = sum(len(c.units) for c in work)
  finished = sum((c.layer, u) in done for c in work for u in c.units)
  atlas_rows: dict[str, int] = {}  # layer -> rows in its atlas when written
  touched = set()  # layers this process rendered into
  failed: list[dict[str, Any]] = []  # chunks that went non-finite (a re-run tries them again)
  bar = tqdm(
    total=total,
    initial=finished,
    desc=f"sweep {model.spec.name}",
    unit="unit",
    file=sys.stderr,
    dynamic_ncols=True,
    disable=not progress_bar,
  )
  with bar:
    for layer in dict.fromkeys(c.layer for c in work) if rule.active else ():
      todo = [u for c in work if c.layer == layer for u in c.units if (layer, u) not in done]
      if todo:
        failed += _render_continuous(
          model, layer, todo, config, key, mesh, batch, rule, store, best, index, bar
        )
        touched.add(layer)
        atlas_rows[layer] = _write_atlas(store, layer, config.size)
    for i, chunk in enumerate(work if not rule.active else ()):
      todo = [u for u in chunk.units if (chunk.layer, u) not in done]
      if todo:
        bar.set_postfix_str(f"{chunk.layer} units {todo[0]}-{todo[-1]}", refresh=True)
        try:
          pictures, rows = render_chunk(model, chunk, todo, config, key, mesh, layers)
        except render_api.NonFiniteError as e:  # record it and go on with the other chunks
          failed.append(
            {"layer": chunk.layer, "units": list(todo), "step": e.step, "error": str(e)}
          )
          bar.update(len(todo))
          continue
        for row in rows:
          row["png"] = str(store.png(chunk.layer, row["unit"]).relative_to(store.root))
          row["process"] = index
        if best is not None:
          _add_quality(rows, best)
        store.commit(chunk.layer, chunk.index, pictures, rows)
        touched.add(chunk.layer)
        bar.update(len(todo))
      last_of_layer = i + 1 == len(work) or work[i + 1].layer != chunk.layer
      if last_of_layer and chunk.layer in touched:
        atlas_rows[chunk.layer] = _write_atlas(store, chunk.layer, config.size)

  for layer in layers:  # atlases of layers this run did not touch (other processes, resume)
    rows = store.rows([layer])
    if rows and atlas_rows.get(layer) != len(rows):
      _write_atlas(store, layer, config.size)
  summary = summarize(store, model, wanted, recorded)
  summary["failed"] = failed
  store_lib.write_json(store.root / store_lib.SUMMARY, summary)
  return summary


def _render_continuous(
  model, layer, todo, config, key, mesh, batch, rule, store, best, process, bar
) -> list[dict[str, Any]]:
  """One layer by continuous batching: each group of units that finish together is committed
  (PNGs, then an index file named by the group's first unit, unique in the layer) before
  their slots take the next units. Units are scored every few steps, so the scorer computes
  the network up to this layer only (its own compile, forward only: seconds), not up to the
  sweep's deepest layer as the fixed-step path's one final scoring does."""

  def commit(finished):
    pictures = {unit: image for unit, image, _ in finished}
    rows = [row for _, _, row in finished]
    first = min(pictures)
    for row in rows:
      row["chunk"] = first
      row["chunk_units"] = len(rows)
      row["png"] = str(store.png(layer, row["unit"]).relative_to(store.root))
      row["process"] = process
    if best is not None:
      _add_quality(rows, best)
    store.commit(layer, first, pictures, rows)

  def progress(finished, status):
    bar.set_postfix_str(status, refresh=False)
    bar.update(finished)

  return continuous.render_layer(
    model,
    layer,
    todo,
    config,
    key,
    mesh,
    batch,
    rule,
    commit,
    best=best[layer] if best is not None else None,
    progress=progress,
  )


def _write_atlas(store: store_lib.Store, layer: str, size: int) -> int:
  rows = store.rows([layer])
  store.write_atlas(layer, rows.values(), size)
  return len(rows)


def summarize(
  store: store_lib.Store, model: Model, wanted: dict[str, tuple[int, ...]], settings: dict[str, Any]
) -> dict[str, Any]:
  """Per-layer statistics over the wanted units found in the store."""
  rows = store.rows(wanted)
  per_layer = {}
  for layer, units in wanted.items():
    got = [rows[(layer, u)] for u in units if (layer, u) in rows]
    entry: dict[str, Any] = {"units": len(units), "done": len(got)}
    if got:
      entry["final_median"] = float(np.median([r["final"] for r in got]))
      entry["steps_median"] = float(np.median([r["steps"] for r in got]))
    if got and "ratio" in got[0]:
      entry["ratio"] = sweep_quality.ratio_stats([r["ratio"] for r in got])
    per_layer[layer] = entry
  return {
    "model": model.spec.name,
    "out": str(store.root),
    "settings": settings,
    "layers": per_layer,
    "written": store_lib.now(),
  }


def table(summary: dict[str, Any]) -> str:
  """The summary as a fixed-width text table, one line per layer."""
  head = (
    f"{'layer':<14}{'done':>9}{'steps med':>10}{'final med':>11}{'ratio min':>11}{'median':>9}"
    f"{'max':>9}{'>1':>7}"
  )
  lines = [head, "-" * len(head)]
  for layer, e in summary["layers"].items():
    r = e.get("ratio", {})

    def fmt(k, spec=".2f", r=r):
      return format(r[k], spec) if k in r else "-"

    final = format(e["final_median"], ".3g") if "final_median" in e else "-"
    steps = format(e["steps_median"], "g") if "steps_median" in e else "-"
    lines.append(
      f"{layer:<14}{e['done']:>4}/{e['units']:<4}{steps:>10}{final:>11}{fmt('min'):>11}"
      f"{fmt('median'):>9}{fmt('max'):>9}{fmt('above_1', '.0%'):>7}"
    )
  return "\n".join(lines)


def check(out: str | pathlib.Path) -> list[str]:
  """Consistency problems of a store (``sweep_store.Store.check``); empty when sound."""
  return store_lib.Store(out).check()


def load_summary(out: str | pathlib.Path) -> dict[str, Any]:
  return json.loads((pathlib.Path(out) / store_lib.SUMMARY).read_text())


__all__ = [
  "DEFAULT_BATCH",
  "check",
  "load_summary",
  "manifest",
  "render_chunk",
  "settings",
  "summarize",
  "sweep",
  "table",
]
