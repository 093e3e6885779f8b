"""Dataset building: one YOLO-seg training set (plus exact COCO RLE ground truth) from many kinds of sources.

Stages, one module each:

* :mod:`animeseg.data.config` reads and validates ``datasets.yaml``.
* :mod:`animeseg.data.sources` turns each source (composites, mask pairs, COCO, LabelMe, YOLO) into
  :class:`~animeseg.data.example.Example` records: an image at its written size plus instance masks.
* :mod:`animeseg.data.write` turns an example into files (image, YOLO polygons, COCO RLE records).
* :mod:`animeseg.data.build` runs the sources (optionally in worker processes) and streams everything into the
  output folder, with a manifest, provenance and a preview sheet.
* :mod:`animeseg.data.check` validates any YOLO-seg dataset; :mod:`animeseg.data.demo` writes a synthetic
  source tree to try it all on.
"""
