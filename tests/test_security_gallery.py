"""The gallery against a hostile sweep or site folder (red-team report, section 5; issue 17).

Each test is one attack of ``../shared/design/reviews/red-team.md``: a ``site.json`` naming files
outside the site, index rows whose ``png`` leaves the sweep (absolute, ``..``, a symlink), a
site folder that holds someone else's files. Stores are written with ``tests/test_gallery.py``'s
``make_store`` (random 8x8 PNGs, no rendering).
"""

import json
import os

import pytest
from test_gallery import make_store

from featviz import cli, gallery, images
from featviz.gallery import files as gallery_files


def _attempt(fn, *args, **kwargs):
  """The exception ``fn`` raised, or None: the harm is checked first, the refusal after."""
  try:
    fn(*args, **kwargs)
  except Exception as e:  # noqa: BLE001
    return e
  return None


def _site(tmp_path):
  store = make_store(tmp_path / "store", {"conv1": 2})
  site = tmp_path / "site"
  gallery.build(store, site)
  return store, site


def _add_to_record(site, *paths):
  record = json.loads((site / "site.json").read_text())
  record["files"].update({p: {"sha256": "x"} for p in paths})
  (site / "site.json").write_text(json.dumps(record))


@pytest.mark.parametrize(
  "rel", ["../victim/keep.txt", "{victim}/keep.txt", "tiny/../../victim/keep.txt"]
)
def test_a_site_json_naming_files_outside_the_site_deletes_nothing(tmp_path, rel):
  store, site = _site(tmp_path)
  victim = tmp_path / "victim"
  victim.mkdir()
  (victim / "keep.txt").write_text("keep")
  _add_to_record(site, rel.format(victim=victim))
  error = _attempt(gallery.build, store, site)
  assert (victim / "keep.txt").read_text() == "keep" and victim.is_dir()
  assert type(error).__name__ == "SiteFolderError" and "refusing the path" in str(error)


def test_a_symlinked_folder_in_the_site_is_not_followed_to_delete(tmp_path):
  store, site = _site(tmp_path)
  victim = tmp_path / "victim"
  victim.mkdir()
  (victim / "keep.txt").write_text("keep")
  (site / "elsewhere").symlink_to(victim)
  _add_to_record(site, "elsewhere/keep.txt")
  error = _attempt(gallery.build, store, site)
  assert (victim / "keep.txt").read_text() == "keep"
  assert type(error).__name__ == "SiteFolderError" and "is a symlink" in str(error)


def test_the_walk_removing_empty_folders_stops_at_the_site(tmp_path):
  store = make_store(tmp_path / "store", {"conv1": 2})
  site = tmp_path / "outer" / "site"
  gallery.build(store, site)
  _add_to_record(site, "gone/deeper/file.txt")  # recorded, absent: only its folders may go
  (site / "gone" / "deeper").mkdir(parents=True)
  report = gallery.build(store, site)
  assert report.removed == [] and not (site / "gone").exists()
  assert site.is_dir() and (tmp_path / "outer").is_dir()


@pytest.mark.parametrize("png", ["{secret}", "../secret.txt", "conv1/../../secret.txt"])
def test_an_index_row_png_outside_the_sweep_is_refused(tmp_path, png):
  store = make_store(tmp_path / "store", {"conv1": 2})
  secret = tmp_path / "secret.txt"
  secret.write_text("private")
  index = store / "_index/conv1/00000.json"
  data = json.loads(index.read_text())
  data["rows"][0]["png"] = png.format(secret=secret)
  index.write_text(json.dumps(data))
  error = _attempt(gallery.build, store, tmp_path / "site")
  leaked = [
    p for p in (tmp_path / "site").rglob("*") if p.is_file() and p.read_bytes() == b"private"
  ]
  assert leaked == []
  assert type(error).__name__ == "UnsafeSweepPathError"
  assert "relative path inside the sweep" in str(error)


def test_a_symlinked_png_is_refused_not_copied(tmp_path):
  store = make_store(tmp_path / "store", {"conv1": 2})
  secret = tmp_path / "secret.txt"
  secret.write_text("private")
  os.chmod(secret, 0o600)
  (store / "conv1/0000.png").unlink()
  (store / "conv1/0000.png").symlink_to(secret)
  error = _attempt(gallery.build, store, tmp_path / "site")
  assert not (tmp_path / "site/tiny/conv1/0000.png").exists()
  assert type(error).__name__ == "UnsafeSweepPathError" and "is a symlink" in str(error)


def test_a_symlinked_layer_folder_is_refused(tmp_path):
  store = make_store(tmp_path / "store", {"conv1": 2})
  elsewhere = tmp_path / "elsewhere"
  (store / "conv1").rename(elsewhere)
  (store / "conv1").symlink_to(elsewhere)
  error = _attempt(gallery.build, store, tmp_path / "site")
  assert not (tmp_path / "site/tiny/conv1/0000.png").exists()
  assert type(error).__name__ == "UnsafeSweepPathError" and "'conv1' is a symlink" in str(error)


def test_pngs_are_copied_never_hard_linked(tmp_path):
  store = make_store(tmp_path / "store", {"conv1": 2})
  os.chmod(store / "conv1/0000.png", 0o666 & ~images._umask())  # the mode a link used to need
  gallery.build(store, tmp_path / "site")
  copy = tmp_path / "site/tiny/conv1/0000.png"
  assert not copy.samefile(store / "conv1/0000.png") and copy.stat().st_nlink == 1
  assert copy.read_bytes() == (store / "conv1/0000.png").read_bytes()


@pytest.mark.parametrize(
  "mine",
  [
    {"index.html": "mine"},
    {"assets/gallery.css": "mine"},
    {"site.json": "mine", "index.html": "mine"},  # someone's own site.json: not a gallery's
    {"site.json": '{"format": 1, "files": []}'},
  ],
)
def test_out_holding_files_the_gallery_did_not_write_is_refused(tmp_path, capsys, mine):
  store = make_store(tmp_path / "store", {"conv1": 2})
  www = tmp_path / "www"
  for rel, text in mine.items():
    (www / rel).parent.mkdir(parents=True, exist_ok=True)
    (www / rel).write_text(text)
  code = cli.main(["gallery", str(store), "--out", str(www)])
  err = capsys.readouterr().err
  for rel, text in mine.items():
    assert (www / rel).read_text() == text
  assert sorted(p.relative_to(www).as_posix() for p in www.rglob("*") if p.is_file()) == sorted(
    mine
  )
  assert code == 2 and "refusing" in err and "empty folder" in err


def test_an_empty_folder_is_claimed_and_a_failed_run_can_be_repeated(tmp_path, monkeypatch):
  store = make_store(tmp_path / "store", {"conv1": 2})
  site = tmp_path / "site"
  site.mkdir()
  calls = []

  def fail_on_second_png(self, rel, source):
    calls.append(rel)
    if len(calls) == 2:
      raise OSError("disk full")
    return copy(self, rel, source)

  copy = gallery_files.Writer.copy
  monkeypatch.setattr(gallery_files.Writer, "copy", fail_on_second_png)
  with pytest.raises(OSError):
    gallery.build(store, site)
  monkeypatch.setattr(gallery_files.Writer, "copy", copy)
  assert gallery.build(store, site).units == 2  # the folder is the gallery's: no refusal


@pytest.mark.parametrize(
  "field, value",
  [("ratio", "<script>x</script>"), ("final", None), ("final", [1]), ("ratio", True)],
)
def test_an_index_row_with_a_number_that_is_not_one_is_refused_by_the_cli(
  tmp_path, capsys, field, value
):
  """Red team, section 5: a row's ``ratio`` as a string crashed the page writer (exit 1,
  ``ValueError: Unknown format code 'f'``)."""
  store = make_store(tmp_path / "store", {"conv1": 2})
  index = store / "_index/conv1/00000.json"
  data = json.loads(index.read_text())
  data["rows"][0][field] = value
  index.write_text(json.dumps(data))
  code = cli.main(["gallery", str(store), "--out", str(tmp_path / "site")])
  err = capsys.readouterr().err
  if value is None:  # null is a number not measured: the site is built
    assert code == 0
    return
  assert code == 2 and f"has {field} = " in err and "not a finite number or null" in err
  assert "Traceback" not in err and not (tmp_path / "site/index.html").exists()
