"""Many units: partition them into chunks (:mod:`.partition`), render each chunk over the local
devices (:mod:`.run`), commit it to a resumable store (:mod:`.store`) and score it against a
photo dataset (:mod:`.quality`). ``featviz.sweep`` is :func:`featviz._sweep.run.sweep`."""
