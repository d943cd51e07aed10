"""A full disk or an unwritable cache folder: one line naming the file and what to do, exit 1,
no traceback and no half-written file (red team, issue 17: ``OSError: [Errno 28]`` and
``[Errno 30] Read-only file system`` tracebacks).

The failures are injected where the operating system would raise them (the write of the PNG,
the cache's folder), as this machine's test user can write anywhere.
"""

import errno
import io

import pytest

from featviz import cli
from featviz import images as images_lib

RENDER = ["render", "mnist_cnn", "logit:0", "--size", "28", "--steps", "2", "--no-progress"]


def test_a_full_disk_while_writing_a_png_names_the_file(
  tmp_path, capsys, monkeypatch, featviz_home
):
  def full(self, fp, *args, **kwargs):
    if isinstance(fp, io.BytesIO):
      return real(self, fp, *args, **kwargs)
    raise OSError(errno.ENOSPC, "No space left on device")  # as f.write raises it: no file

  real = images_lib.Image.Image.save
  monkeypatch.setattr(images_lib.Image.Image, "save", full)
  out = tmp_path / "r.png"
  code = cli.main([*RENDER, "--out", str(out)])
  err = capsys.readouterr().err
  assert code == 1 and "Traceback" not in err
  assert "the disk is full writing" in err and "free some space" in err
  assert str(tmp_path / "r_images" / "0000_logit_0.png") in err  # the file it was writing
  written = [p for p in tmp_path.rglob("*") if p.is_file() and "featviz_home" not in p.parts]
  assert written == []  # no half-written PNG, no temporary file


@pytest.mark.parametrize("code_, what", [(errno.EROFS, "read-only"), (errno.EACCES, "permission")])
def test_an_unwritable_featviz_home_says_to_set_it(
  tmp_path, capsys, monkeypatch, featviz_home, code_, what
):
  from featviz.zoo import cache

  def refuse(*args, **kwargs):
    raise OSError(code_, "refused", str(featviz_home / "models" / "mnist_cnn"))

  monkeypatch.setattr(cache, "save", refuse)
  monkeypatch.setattr(cache, "entries", lambda *a, **k: [])  # nothing cached yet
  code = cli.main([*RENDER, "--out", str(tmp_path / "r.png")])
  err = capsys.readouterr().err
  assert code == 1 and "Traceback" not in err and what in err
  assert "set FEATVIZ_HOME to a writable folder" in err and str(featviz_home) in err


def test_other_os_errors_are_not_hidden(tmp_path, monkeypatch, featviz_home):
  """Only the machine's failures get one line: a bug's OSError keeps its traceback."""

  def broken(*args, **kwargs):
    raise OSError(errno.EBADF, "Bad file descriptor")

  monkeypatch.setattr(images_lib, "save_png", broken)
  with pytest.raises(OSError, match="Bad file descriptor"):
    cli.main([*RENDER, "--out", str(tmp_path / "r.png")])


def test_an_images_folder_that_is_a_file_is_refused_before_the_render(tmp_path, capsys):
  """Red team: ``--out w4/a.png`` with ``w4/a_images`` a file rendered, then failed with a
  ``FileExistsError`` traceback; the render was lost."""
  (tmp_path / "a_images").write_text("mine")
  code = cli.main([*RENDER, "--out", str(tmp_path / "a.png")])
  err = capsys.readouterr().err
  assert code == 2 and "a_images is a file" in err and "Traceback" not in err
  assert (tmp_path / "a_images").read_text() == "mine" and not (tmp_path / "a.png").exists()


def test_a_second_render_to_one_out_replaces_the_first_ones_images(tmp_path, capsys):
  """Red team: 4 units, then 1, to the same ``--out`` left the 4 old PNGs beside the new one."""
  out = str(tmp_path / "a.png")
  args = ["render", "mnist_cnn", "--size", "28", "--steps", "2", "--no-progress", "--out", out]
  assert cli.main([*args[:2], "conv1:0-3", *args[2:]]) == 0
  (tmp_path / "a_images" / "notes.txt").write_text("mine")  # not a render's: kept
  assert cli.main([*args[:2], "conv2:1", *args[2:]]) == 0
  capsys.readouterr()
  assert sorted(p.name for p in (tmp_path / "a_images").iterdir()) == [
    "0000_conv2_1.png",
    "notes.txt",
  ]
