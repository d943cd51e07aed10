"""The compiled render loop: settings (:mod:`.config`), per-image keys (:mod:`.keys`), the
programs and their cache (:mod:`.program`) and :func:`featviz.render` (:mod:`.api`)."""
