"""animeseg: anime-character instance segmentation.

The library's stages live in one module each (``animeseg.data``, ``animeseg.train``, ``animeseg.predict``,
``animeseg.refine``, ``animeseg.fusion``, ``animeseg.writers``, ``animeseg.export``, ``animeseg.evaluate``);
:class:`~animeseg.instances.Instances` is the record that flows between them.

Importing animeseg has no side effects: the offline set-up of Ultralytics (:func:`animeseg._offline.ensure_offline`)
runs once, lazily, right before Ultralytics is first imported (:func:`animeseg._offline.import_ultralytics`).
"""

import logging

from animeseg._offline import ensure_offline
from animeseg.instances import Instances

__version__ = "0.1.0"
__all__ = ["Instances", "__version__", "ensure_offline"]

# A library stays silent unless its caller configures logging (the command line does); without this, logging's
# last-resort handler would print the library's warnings to stderr.
logging.getLogger(__name__).addHandler(logging.NullHandler())
