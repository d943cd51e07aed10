"""The gallery: a static, browsable site of every unit a sweep rendered (Microscope-like).

``featviz.gallery.build(["runs/effnet"], "site")`` reads sweep stores (:mod:`.read`), makes the
pages (:mod:`.pages`, every text HTML-escaped), adds dataset examples (:mod:`.examples`) and writes
it all atomically and incrementally (:mod:`.files`), with the stylesheet and script of
:mod:`.assets`.
"""

from featviz.gallery.build import Report, build
from featviz.gallery.examples import WeightsMismatchError
from featviz.gallery.files import SiteFolderError
from featviz.gallery.read import NotASweepError, UnsafeSweepPathError, read_sweep

__all__ = [
  "NotASweepError",
  "Report",
  "SiteFolderError",
  "UnsafeSweepPathError",
  "WeightsMismatchError",
  "build",
  "read_sweep",
]
