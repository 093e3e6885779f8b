"""Imported once by the worker server process of ``animeseg data build --workers N`` (see ``build._pool``).

``animeseg.masks.mask_to_polygon`` joins the parts of a multi-part mask with Ultralytics' ``merge_multi_segment``;
importing Ultralytics (and torch) here, once, saves every worker that import.
"""

from animeseg._offline import import_ultralytics

import_ultralytics()

from ultralytics.data import converter  # noqa: E402, F401
