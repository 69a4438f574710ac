"""imgcls: image classifiers trained by a TFX pipeline and served by TF Serving.

The one top-level import name. `pipeline/`, `components/` and `trainer/`
stand at the repository's top level, where TFX's templates put them, and
import as `imgcls.pipeline`, `imgcls.components` and `imgcls.trainer`
(imgcls/top_level.py: installed there by setup.py, mapped to the folders in
a checkout). Nothing imports them by a second name.
"""
from imgcls import top_level as _top_level

_top_level.map_checkout_folders(__path__[0])
