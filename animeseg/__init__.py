"""animeseg: anime-character instance segmentation.

The library's stages live in one module each (``animeseg.data``, ``animeseg.train``, ``animeseg.predict``,
``animeseg.refine``, ``animeseg.fusion``, ``animeseg.writers``, ``animeseg.export``, ``animeseg.evaluate``);
:class:`~animeseg.instances.Instances` is the record that flows between them.
"""

from animeseg._offline import ensure_offline
from animeseg.instances import Instances

__version__ = "0.1.0"
__all__ = ["Instances", "__version__", "ensure_offline"]

# Before anything can import ultralytics: its import reads settings and may start network checks.
ensure_offline()
