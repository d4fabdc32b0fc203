"""``onnxconv tune``: the fastest deployment of one graph on one target that is provably the
same function (or, under the user's explicit accuracy budget, within that budget of it).

The package owns the search: equivalent formulations of the graph (:mod:`.rewrites`, with the
shuffle fold in :mod:`.fold`, on top of the checked edits of :mod:`.edit` and the sites of
:mod:`.sites`), session-setting candidates per execution provider (:mod:`.settings`), the proof
that every candidate computes what the original's sources say, or stays within the budget at a
lower precision (:mod:`.proof`, through :mod:`onnxconv.validate`), what a run is asked
(:mod:`.options`), the timing (:mod:`.timing`, through the bench's worker processes), the
choice (:mod:`.search`, its records in :mod:`.candidates`) and the files it writes
(:mod:`.report`). Only :mod:`onnxconv.cli` prints.
"""
