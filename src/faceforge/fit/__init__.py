"""``faceforge fit PHOTOS OUT``: from a folder of identity folders to a calibrated, exported model.

A pipeline above the stages it calls (align, clean, split, pack, train, calibrate, eval, export),
each through its public function: ``plan.py`` reads the data and chooses the recipe (and says why),
``stages.py`` runs one stage each, ``pipeline.py`` runs them resumably (a stage whose marker
``OUT/fit/<stage>.json`` exists is skipped; the marker is written atomically, last), ``report.py``
writes the report.
"""
